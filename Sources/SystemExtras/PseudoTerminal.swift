//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A pty pair (`openpty`) with the slave in raw mode, as a console backend or a
/// guest's console device wants it: bytes pass through untouched.
public final class PseudoTerminal: Sendable {
    public let master: FileDescriptor
    /// Kept open for the pty's whole life, so that a reader closing its end of
    /// the slave never makes the master report EIO (xenconsoled's trick).
    public let slave: FileDescriptor
    /// The slave's path, e.g. `/dev/pts/7`.
    public let slavePath: String

    /// How the slave's line discipline starts.
    public enum Mode: Sendable {
        /// No processing at all: bytes pass as they are (a backend's end of a
        /// console, a channel's device).
        case raw
        /// A terminal as a Linux console tty starts (`hvc0` under a getty): lines
        /// edited and echoed, CR read as NL, NL written as CR NL, ^C and ^Z as signals.
        case terminal
    }

    public init(_ mode: Mode = .raw) throws(Errno) {
        var master: Int32 = -1
        var slave: Int32 = -1
        guard openpty(&master, &slave, nil, nil, nil) == 0 else { throw Errno(rawValue: errno) }
        _ = fcntl(master, F_SETFD, FD_CLOEXEC)
        _ = fcntl(slave, F_SETFD, FD_CLOEXEC)
        var settings = termios()
        if tcgetattr(slave, &settings) == 0 {
            switch mode {
            case .raw:
                cfmakeraw(&settings)
            case .terminal:
                // What `stty sane` sets, which is also how the kernel starts a console tty.
                settings.c_iflag |= tcflag_t(BRKINT | ICRNL | IMAXBEL | IUTF8)
                settings.c_iflag &= ~tcflag_t(INLCR | IGNCR | IXOFF)
                settings.c_oflag |= tcflag_t(OPOST | ONLCR)
                settings.c_oflag &= ~tcflag_t(OCRNL | ONLRET)
                settings.c_lflag |= tcflag_t(ISIG | ICANON | IEXTEN | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE)
                settings.c_lflag &= ~tcflag_t(ECHONL | NOFLSH | TOSTOP)
            }
            tcsetattr(slave, TCSANOW, &settings)
        }
        guard let name = ttyname(slave) else {
            let code = errno
            close(master)
            close(slave)
            throw Errno(rawValue: code)
        }
        self.master = FileDescriptor(rawValue: master)
        self.slave = FileDescriptor(rawValue: slave)
        self.slavePath = String(cString: name)
    }

    deinit {
        try? master.close()
        try? slave.close()
    }
}
