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
    /// its own thread or queue: the services' loops run their rounds (and their fsyncs) on threads
    /// of their own, and `StoreWriter.write` runs a write on the writer's dispatch queue.
    ///
    /// Call once, first thing in a service's `main`, before any task starts. Returns whether the
    /// executor was installed (it is not on platforms NIO does not support for this).
    @discardableResult
    public static func install() -> Bool {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
