import Foundation
import Synchronization

/// Threads that each own a ``BlockingConnection`` and run jobs on it: the pieces of a
/// participant's round run concurrently across them while the loop's thread waits for all. They
/// block on PostgreSQL, which is why they are threads of their own, never an event loop nor Swift's
/// cooperative pool.
final class Workers: Sendable {
    /// A job: runs on a worker's connection.
    typealias Job = @Sendable (BlockingConnection) -> Void

    private let shared: Shared
    let count: Int

    private final class Shared: Sendable {
        let queue = Mutex<(jobs: [Job], stopping: Bool)>(([], false))
        let ready = DispatchSemaphore(value: 0)
        let stopped = DispatchGroup()
    }

    /// Starts `count` threads, each with a connection made by `connect` (which connects lazily, on
    /// its first statement, on the worker's thread).
    init(count: Int, name: String, connect: @escaping @Sendable () -> BlockingConnection) {
        precondition(count >= 1, "a pool of \(count) workers")
        self.count = count
        let shared = Shared()
        self.shared = shared
        for index in 0..<count {
            shared.stopped.enter()
            let thread = Thread {
                Self.work(shared: shared, connection: connect())
                shared.stopped.leave()
            }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    private static func work(shared: Shared, connection: BlockingConnection) {
        while true {
            shared.ready.wait()
            let job = shared.queue.withLock { queue -> Job? in
                if queue.jobs.isEmpty { return nil }
                return queue.jobs.removeFirst()
            }
            guard let job else {
                // Woken with no job: stopping.
                connection.close()
                return
            }
            job(connection)
        }
    }

    /// Runs every job, each on some worker, and returns when all have returned.
    func runAll(_ jobs: [Job]) {
        guard !jobs.isEmpty else { return }
        let done = DispatchGroup()
        let wrapped: [Job] = jobs.map { job in
            done.enter()
            return { connection in
                job(connection)
                done.leave()
            }
        }
        shared.queue.withLock { $0.jobs.append(contentsOf: wrapped) }
        for _ in wrapped { shared.ready.signal() }
        done.wait()
    }

    /// Runs `job` on a worker and returns its result.
    func run<T: Sendable>(_ job: @escaping @Sendable (BlockingConnection) -> T) -> T {
        let result = Slot<T>()
        runAll([{ connection in result.put(job(connection)) }])
        return result.take()
    }

    /// A value handed from a worker to the thread that waits for it.
    private final class Slot<T: Sendable>: Sendable {
        private let value = Mutex<T?>(nil)
        func put(_ new: T) { value.withLock { $0 = new } }
        func take() -> T { value.withLock { $0! } }
    }

    /// Stops every worker once the queued jobs have run, closing their connections, and waits.
    func stop() {
        let alreadyStopping = shared.queue.withLock { queue -> Bool in
            defer { queue.stopping = true }
            return queue.stopping
        }
        guard !alreadyStopping else { return }
        for _ in 0..<count { shared.ready.signal() }
        shared.stopped.wait()
    }
}
