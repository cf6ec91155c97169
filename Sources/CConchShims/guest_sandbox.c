//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

// The wall around a simulated guest (see docs/SECURITY.md). A guest is a host
// process, so the hypervisor starts it in new user, mount, pid, network, IPC and
// UTS namespaces, as an unprivileged uid, with a filesystem view in which the run
// directory is gone, the host is read-only, and /run, /proc, /dev/pts and /dev/shm
// are its own.
//
// Why C: between clone() and execve() the child is a copy of a multi-threaded
// process, so it may only make system calls. Every call below is a raw syscall
// (glibc's setresuid, for one, would try to reach threads that do not exist here).

#define _GNU_SOURCE
#include "CConchShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// MARK: - Helpers usable between clone and exec (syscalls only, no allocation)

static size_t sb_strlen(const char *text) {
    size_t length = 0;
    while (text[length] != 0) length++;
    return length;
}

/// Appends `text` to `buffer` (always NUL-terminated, truncating).
static void sb_append(char *buffer, size_t size, const char *text) {
    size_t used = sb_strlen(buffer);
    for (size_t i = 0; text[i] != 0 && used + 1 < size; i++) buffer[used++] = text[i];
    buffer[used] = 0;
}

static void sb_append_number(char *buffer, size_t size, long value) {
    char digits[24];
    int count = 0;
    unsigned long magnitude = value < 0 ? (unsigned long)(-value) : (unsigned long)value;
    do {
        digits[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude > 0 && count < 22);
    char text[26];
    int at = 0;
    if (value < 0) text[at++] = '-';
    while (count > 0) text[at++] = digits[--count];
    text[at] = 0;
    sb_append(buffer, size, text);
}

/// Writes "<what>: errno <n>" to the report pipe and exits: the parent turns it into the spawn error.
static void sb_fail(int report, const char *what, const char *path) {
    int code = errno;
    char message[512] = {0};
    sb_append(message, sizeof(message), what);
    if (path != NULL) {
        sb_append(message, sizeof(message), " ");
        sb_append(message, sizeof(message), path);
    }
    sb_append(message, sizeof(message), ": ");
    sb_append(message, sizeof(message), strerrorname_np(code) ? strerrorname_np(code) : "error");
    sb_append(message, sizeof(message), " (errno ");
    sb_append_number(message, sizeof(message), code);
    sb_append(message, sizeof(message), ")");
    ssize_t ignored = syscall(SYS_write, report, message, sb_strlen(message));
    (void)ignored;
    syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

static long sb_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    return syscall(SYS_mount, source, target, type, flags, data);
}

static int sb_is_directory(const char *path) {
    struct stat info;
    return syscall(SYS_stat, path, &info) == 0 && S_ISDIR(info.st_mode);
}

static long sb_set_mount_attributes(const char *path, unsigned int flags, __u64 set, __u64 clear) {
    struct mount_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.attr_set = set;
    attributes.attr_clr = clear;
    return syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attributes, sizeof(attributes));
}

/// The filesystem view: host read-only but for the writable directories, hidden
/// directories covered, private /proc, /dev/pts, /dev/shm and run directory.
static void sb_build_view(const struct cconch_sandbox *spec, int report) {
    // Nothing done here may propagate back to the host's mount namespace.
    if (sb_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) sb_fail(report, "make / private", NULL);
    // Writable directories become mounts of their own, so that they can stay writable below.
    for (const char *const *dir = spec->writable; dir != NULL && *dir != NULL; dir++) {
        if (!sb_is_directory(*dir)) continue;
        if (sb_mount(*dir, *dir, NULL, MS_BIND | MS_REC, NULL) != 0) sb_fail(report, "bind", *dir);
    }
    if (sb_set_mount_attributes("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0) != 0) {
        sb_fail(report, "make the host read-only", NULL);
    }
    for (const char *const *dir = spec->writable; dir != NULL && *dir != NULL; dir++) {
        if (!sb_is_directory(*dir)) continue;
        if (sb_set_mount_attributes(*dir, AT_RECURSIVE, 0, MOUNT_ATTR_RDONLY) != 0) sb_fail(report, "make writable", *dir);
    }
    // An empty, read-only, inaccessible tmpfs over each hidden directory.
    for (const char *const *dir = spec->hidden; dir != NULL && *dir != NULL; dir++) {
        if (!sb_is_directory(*dir)) continue;
        if (sb_mount("none", *dir, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=000") != 0) {
            sb_fail(report, "hide", *dir);
        }
    }
    // The guest's own process table: host processes are not even visible.
    if (sb_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
        sb_fail(report, "mount a private /proc", NULL);
    }
    // Its own ptys: the host's (consoled's, other guests') are not in this instance.
    if (sb_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0) {
        sb_fail(report, "mount a private /dev/pts", NULL);
    }
    if (sb_is_directory("/dev/shm")
        && sb_mount("none", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777") != 0)
    {
        sb_fail(report, "mount a private /dev/shm", NULL);
    }
    if (spec->private_directory != NULL) {
        char options[96] = "size=16m,mode=0755,uid=";
        sb_append_number(options, sizeof(options), (long)spec->uid);
        sb_append(options, sizeof(options), ",gid=");
        sb_append_number(options, sizeof(options), (long)spec->gid);
        if (sb_mount("none", spec->private_directory, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0) {
            sb_fail(report, "mount a private", spec->private_directory);
        }
    }
    if (syscall(SYS_chdir, "/") != 0) sb_fail(report, "chdir", "/");
}

/// Brings the new network namespace's loopback up (the guest's own 127.0.0.1).
static void sb_loopback_up(void) {
    int fd = (int)syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    memcpy(request.ifr_name, "lo", 3);
    if (syscall(SYS_ioctl, fd, SIOCGIFFLAGS, &request) == 0) {
        request.ifr_flags |= IFF_UP;
        syscall(SYS_ioctl, fd, SIOCSIFFLAGS, &request);
    }
    syscall(SYS_close, fd);
}

/// Closes every descriptor but those in `keep` (at most 16, any order).
static void sb_close_all_but(const int *keep, int count) {
    int sorted[16];
    int n = 0;
    for (int i = 0; i < count && n < 16; i++) {
        if (keep[i] < 0) continue;
        int at = n++;
        while (at > 0 && sorted[at - 1] > keep[i]) {
            sorted[at] = sorted[at - 1];
            at--;
        }
        sorted[at] = keep[i];
    }
    unsigned int from = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned int)sorted[i] > from) syscall(SYS_close_range, from, (unsigned int)sorted[i] - 1, 0);
        from = (unsigned int)sorted[i] + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0);
}

static void sb_reset_signals(void) {
    struct kernel_sigaction {
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long mask;
    } action;
    memset(&action, 0, sizeof(action));
    action.handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        syscall(SYS_rt_sigaction, sig, &action, NULL, 8);
    }
    unsigned long none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
}

/// The guest program itself: descriptors in place, then execveat on the
/// descriptor the hypervisor opened (the program's path may be out of the guest's reach).
static void sb_exec_guest(const struct cconch_sandbox *spec, int report) {
    sb_reset_signals();
    // Move the report pipe, the program and every source out of the way first, so that
    // no placement clobbers a descriptor still needed.
    report = (int)syscall(SYS_fcntl, report, F_DUPFD_CLOEXEC, 64);
    int program = (int)syscall(SYS_fcntl, spec->exec_fd, F_DUPFD_CLOEXEC, 64);
    if (report < 0 || program < 0) syscall(SYS_exit_group, 127);
    int staged[16];
    for (int i = 0; i < spec->fd_count && i < 16; i++) {
        staged[i] = (int)syscall(SYS_fcntl, spec->fd_sources[i], F_DUPFD_CLOEXEC, 64);
        if (staged[i] < 0) sb_fail(report, "stage a descriptor", NULL);
    }
    int highest = 2;
    for (int i = 0; i < spec->fd_count && i < 16; i++) {
        if (syscall(SYS_dup2, staged[i], spec->fd_targets[i]) < 0) sb_fail(report, "place a descriptor", NULL);
        if (spec->fd_targets[i] > highest) highest = spec->fd_targets[i];
    }
    // Everything else closes at exec (the report pipe too: EOF tells the parent exec worked).
    syscall(SYS_close_range, (unsigned int)highest + 1, ~0U, CLOSE_RANGE_CLOEXEC);
    syscall(SYS_execveat, program, "", spec->argv, spec->envp, AT_EMPTY_PATH);
    if (errno == ENOENT) {
        // A script: its interpreter opens /dev/fd/<program>, which must survive exec.
        syscall(SYS_fcntl, program, F_SETFD, 0);
        syscall(SYS_execveat, program, "", spec->argv, spec->envp, AT_EMPTY_PATH);
    }
    sb_fail(report, "execute", spec->argv[0]);
}

/// pid 1 of the guest's pid namespace: starts the program, forwards signals to it,
/// reaps orphans, and when the program ends reports its wait status and exits
/// (which ends every other process of the domain with it).
static void sb_init(const struct cconch_sandbox *spec, int report, int status) {
    unsigned long all = ~0UL;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
    long child = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
    if (child < 0) sb_fail(report, "start the guest program", NULL);
    if (child == 0) {
        syscall(SYS_close, status);
        sb_exec_guest(spec, report);
    }
    // Nothing of the hypervisor's memory is for the guest to read.
    syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
    int keep[2] = {status, -1};
    sb_close_all_but(keep, 1);
    for (;;) {
        siginfo_t info;
        long sig = syscall(SYS_rt_sigtimedwait, &all, &info, NULL, 8);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            syscall(SYS_kill, child, sig);
            continue;
        }
        for (;;) {
            int wstatus = 0;
            long reaped = syscall(SYS_wait4, -1, &wstatus, WNOHANG, NULL);
            if (reaped <= 0) break;
            if (reaped == child) {
                ssize_t ignored = syscall(SYS_write, status, &wstatus, sizeof(wstatus));
                (void)ignored;
                syscall(SYS_exit_group, WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus));
            }
        }
    }
}

static void sb_child(const struct cconch_sandbox *spec, int go, int report, int status) {
    // Die with the hypervisor: an orphaned domain has nobody to serve or destroy it.
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    // Of the hypervisor's descriptors, keep only what this guest is given.
    int keep[16 + 4];
    int count = 0;
    keep[count++] = go;
    keep[count++] = report;
    keep[count++] = status;
    keep[count++] = spec->exec_fd;
    for (int i = 0; i < spec->fd_count && i < 16; i++) keep[count++] = spec->fd_sources[i];
    sb_close_all_but(keep, count);
    // Wait for the parent to write our uid and gid maps.
    char byte = 0;
    if (syscall(SYS_read, go, &byte, 1) != 1) syscall(SYS_exit_group, 127);
    syscall(SYS_close, go);
    sb_build_view(spec, report);
    sb_loopback_up();
    if (spec->hostname != NULL) syscall(SYS_sethostname, spec->hostname, sb_strlen(spec->hostname));
    if (syscall(SYS_setsid) < 0) sb_fail(report, "setsid", NULL);
    if (spec->drop_supplementary_groups && syscall(SYS_setgroups, 0, NULL) != 0) sb_fail(report, "setgroups", NULL);
    if (syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) != 0) sb_fail(report, "setresgid", NULL);
    if (syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) != 0) sb_fail(report, "setresuid", NULL);
    // A change of credentials clears the parent-death signal: set it again, then make
    // sure the parent did not die in between (it holds the report pipe's read end).
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    struct pollfd parent = {.fd = report, .events = POLLOUT};
    if (syscall(SYS_poll, &parent, 1, 0) > 0 && (parent.revents & POLLERR)) syscall(SYS_exit_group, 127);
    if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) sb_fail(report, "no_new_privs", NULL);
    sb_init(spec, report, status);
}

// MARK: - The parent's side

static int sb_write_file(pid_t pid, const char *name, const char *text, char *error, size_t error_size) {
    char path[64] = "/proc/";
    sb_append_number(path, sizeof(path), pid);
    sb_append(path, sizeof(path), "/");
    sb_append(path, sizeof(path), name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        snprintf(error, error_size, "write %s (%s): %s", path, text, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

pid_t cconch_spawn_sandboxed(const struct cconch_sandbox *spec, int *status_fd, char *error, size_t error_size) {
    error[0] = 0;
    if (spec->fd_count > 16) {
        snprintf(error, error_size, "at most 16 descriptors may be placed");
        errno = EINVAL;
        return -1;
    }
    int go[2], report[2], status[2];
    if (pipe2(go, O_CLOEXEC) != 0) return -1;
    if (pipe2(report, O_CLOEXEC) != 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    if (pipe2(status, O_CLOEXEC) != 0) {
        close(go[0]);
        close(go[1]);
        close(report[0]);
        close(report[1]);
        return -1;
    }
    unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
    if (pid == 0) {
        syscall(SYS_close, go[1]);
        syscall(SYS_close, report[0]);
        syscall(SYS_close, status[0]);
        sb_child(spec, go[0], report[1], status[1]);
    }
    int saved = errno;
    close(go[0]);
    close(report[1]);
    close(status[1]);
    if (pid < 0) {
        snprintf(error, error_size, "clone with new namespaces: %s", strerror(saved));
        close(go[1]);
        close(report[0]);
        close(status[0]);
        errno = saved;
        return -1;
    }
    // One uid and one gid exist in the guest's user namespace: its own.
    char map[64];
    snprintf(map, sizeof(map), "%u %u 1", spec->uid, spec->uid);
    int failed = sb_write_file((pid_t)pid, "uid_map", map, error, error_size);
    if (!failed && !spec->drop_supplementary_groups) {
        failed = sb_write_file((pid_t)pid, "setgroups", "deny", error, error_size);
    }
    if (!failed) {
        snprintf(map, sizeof(map), "%u %u 1", spec->gid, spec->gid);
        failed = sb_write_file((pid_t)pid, "gid_map", map, error, error_size);
    }
    if (!failed) {
        char byte = 1;
        failed = write(go[1], &byte, 1) != 1;
        if (failed) snprintf(error, error_size, "start the guest: %s", strerror(errno));
    }
    close(go[1]);
    // The report pipe closes at the guest program's exec; anything on it is why it failed.
    char message[512];
    size_t used = 0;
    for (;;) {
        ssize_t got = read(report[0], message + used, sizeof(message) - 1 - used);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        used += (size_t)got;
        if (used == sizeof(message) - 1) break;
    }
    close(report[0]);
    if (used > 0 && !failed) {
        message[used] = 0;
        snprintf(error, error_size, "%s", message);
        failed = 1;
    }
    if (failed) {
        kill((pid_t)pid, SIGKILL);
        while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR) {}
        close(status[0]);
        errno = EPERM;
        return -1;
    }
    *status_fd = status[0];
    return (pid_t)pid;
}
