import NIOCore
import NIOPosix

/// Where a service process runs its Swift tasks.
public enum EventLoopExecutor {
    /// Makes NIO's event loops (`MultiThreadedEventLoopGroup.singleton`, the group the HTTP server
    /// and client already use) Swift Concurrency's global executor.
    ///
    /// Without it, every request crosses threads twice per direction: an event loop reads it, a
    /// thread of Swift's own pool runs its handler, and an event loop writes the answer. Each crossing
    /// wakes a sleeping thread — a futex call and, on a virtual machine, an exit to the hypervisor —
    /// and with one client at a time those wake-ups, not the protocol, are what the coordinator's CPU
    /// goes to. With the event loops as the executor, a handler runs on the thread that read its
    /// request.
    ///
    /// The rule this imposes: no task may block its thread for long. Long blocking work belongs on
    /// its own thread or queue, as the group-commit writer's batches do under load; a primary-key
    /// read of the local SQLite file is short enough, and so is the one batch (and its fsync) that a
    /// write commits on its caller's thread when it finds the writer idle
    /// (`GroupCommitWriter.Options.commitsOnCallerWhenIdle`).
    ///
    /// Call once, first thing in a service's `main`, before any task starts. Returns whether the
    /// executor was installed (it is not on platforms NIO does not support for this).
    @discardableResult
    public static func install() -> Bool {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
