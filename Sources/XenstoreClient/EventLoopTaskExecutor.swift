//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import NIOCore

/// Runs Swift tasks on a NIO event loop. A task that prefers this executor
/// (`withTaskExecutorPreference`) sends its requests and is resumed by their
/// replies on the loop that owns the connection, so a round trip involves no
/// thread hand-offs inside the client.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    public let eventLoop: any EventLoop

    public init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
