import Dispatch
import Foundation
import Synchronization

/// A service's loop thread: a dedicated thread (never a NIO event loop or Swift's cooperative pool,
/// since a round blocks on its fsync) that sleeps until inputs arrive or the next deadline passes,
/// then runs one round with everything that arrived.
///
/// ``post(_:)`` may be called from any thread; it never blocks on a round.
public final class LoopThread<Input: Sendable>: @unchecked Sendable {
    /// What one round is given, and what it tells the thread back.
    public struct Round {
        /// Everything posted since the last round, in order.
        public var inputs: [Input]
        /// Monotonic time since the thread started.
        public var now: Duration
    }

    /// What a round asks for next.
    public enum Next {
        /// Another round at once (work is left: records produced while advancing).
        case again
        /// Sleep until inputs arrive or this much time has passed since the thread started
        /// (`nil`: no deadline).
        case sleep(until: Duration?)
        /// Sleep this long whatever arrives (a failed write backs off), then go on.
        case backOff(Duration)
    }

    private struct Inbox {
        var inputs: [Input] = []
        var stopping = false
        var sleeping = false
        var started = false
        var finished = false
        /// ``stop()`` calls waiting for the thread to finish.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let inbox = Mutex(Inbox())
    private let wake = DispatchSemaphore(value: 0)
    private let origin = ContinuousClock.now
    private let name: String

    /// - Parameter name: the thread's name (shown by debuggers and `top -H`; 15 bytes at most on
    ///   Linux, the rest is cut).
    public init(name: String) {
        self.name = name
    }

    /// Monotonic time since the thread was made.
    public var now: Duration { ContinuousClock.now - origin }

    /// Hands `input` to the next round (to `late`, on the caller's thread, once the thread has
    /// finished).
    public func post(_ input: Input) {
        let (sleeping, finished) = inbox.withLock { inbox -> (Bool, Bool) in
            if inbox.finished { return (false, true) }
            inbox.inputs.append(input)
            defer { inbox.sleeping = false }
            return (inbox.sleeping, false)
        }
        if finished { late?(input) }
        if sleeping { wake.signal() }
    }

    private nonisolated(unsafe) var late: (@Sendable (Input) -> Void)?

    /// Starts the thread. `round` runs on it, once per round, until ``stop()``; `finish` runs on
    /// it last, with the inputs that arrived after the last round; `late` gets what is posted
    /// after that.
    public func start(round: @escaping @Sendable (Round) -> Next, finish: @escaping @Sendable ([Input]) -> Void, late: @escaping @Sendable (Input) -> Void) {
        self.late = late
        let thread = Thread { [self] in
            Self.nameCurrentThread(name)
            var next = Next.again
            while true {
                switch next {
                case .again:
                    break
                case .backOff(let delay):
                    Thread.sleep(forTimeInterval: delay.timeInterval)
                case .sleep(let deadline):
                    let idle = inbox.withLock { inbox -> Bool in
                        guard inbox.inputs.isEmpty, !inbox.stopping else { return false }
                        inbox.sleeping = true
                        return true
                    }
                    if idle {
                        if let deadline {
                            let wait = deadline - now
                            if wait > .zero { _ = wake.wait(timeout: .now() + wait.timeInterval) }
                        } else {
                            wake.wait()
                        }
                        inbox.withLock { $0.sleeping = false }
                    }
                }
                let (inputs, stopping) = inbox.withLock { inbox in
                    defer { inbox.inputs.removeAll(keepingCapacity: true) }
                    return (inbox.inputs, inbox.stopping)
                }
                if stopping {
                    finish(inputs)
                    break
                }
                next = round(Round(inputs: inputs, now: now))
            }
            let waiters = inbox.withLock { inbox in
                inbox.finished = true
                defer { inbox.stopWaiters = [] }
                return inbox.stopWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
        inbox.withLock { $0.started = true }
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// Names the calling thread. On Linux a new thread keeps its creator's name (a dispatch or
    /// NIO thread's), which misleads `top -H` and profiles, and Foundation's `Thread.name` reaches
    /// the kernel only if the creator has finished starting the thread: the thread writes its
    /// own `comm` (15 bytes at most) instead.
    private static func nameCurrentThread(_ name: String) {
        #if os(Linux)
        let short = String(decoding: name.utf8.prefix(15), as: UTF8.self)
        try? short.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
        #else
        Thread.current.name = name
        #endif
    }

    /// Stops the thread after its current round and returns once `finish` has run. Harmless
    /// before ``start(round:finish:)`` and when called again.
    public func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = inbox.withLock { inbox -> Bool in
                inbox.stopping = true
                guard inbox.started, !inbox.finished else { return true }
                inbox.stopWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() } else { wake.signal() }
        }
    }
}

extension Duration {
    var timeInterval: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// A service's loop as ``LoopThread/start(running:writeFailed:afterRound:finish:late:)`` runs it:
/// ``CoordinatorLoop`` and ``ParticipantLoop``.
public protocol ServiceLoop: AnyObject {
    associatedtype Input
    func step(_ inputs: [Input], now: Duration)
    func write() throws
    func advance()
    var hasWork: Bool { get }
    var nextDeadline: Duration? { get }
}

extension CoordinatorLoop: ServiceLoop {}
extension ParticipantLoop: ServiceLoop {}

extension LoopThread {
    /// Runs `loop`'s rounds on the thread: step what arrived and the due timers, write, advance;
    /// then again at once if work is left, else sleep until something is posted or the next
    /// deadline. A write that fails holds the round — nothing of it is sent or answered — and is
    /// tried again after a backoff of 10 ms doubling to 2 s; `writeFailed` hears each failure and
    /// the delay. `afterRound` runs after each round that advanced.
    public func start<Loop: ServiceLoop>(
        running loop: Loop,
        writeFailed: @escaping @Sendable (any Error, Duration) -> Void,
        afterRound: @escaping @Sendable () -> Void = {},
        finish: @escaping @Sendable ([Input]) -> Void,
        late: @escaping @Sendable (Input) -> Void
    ) where Loop.Input == Input {
        let rounds = Rounds(loop)
        start(round: { round in
            let loop = rounds.loop
            loop.step(round.inputs, now: round.now)
            do {
                try loop.write()
            } catch {
                rounds.delay = rounds.delay == .zero ? .milliseconds(10) : min(rounds.delay * 2, .seconds(2))
                writeFailed(error, rounds.delay)
                return .backOff(rounds.delay)
            }
            rounds.delay = .zero
            loop.advance()
            afterRound()
            return loop.hasWork ? .again : .sleep(until: loop.nextDeadline)
        }, finish: finish, late: late)
    }
}

/// The loop and its write backoff, touched by the loop's thread only.
private final class Rounds<Loop: ServiceLoop>: @unchecked Sendable {
    let loop: Loop
    var delay = Duration.zero
    init(_ loop: Loop) { self.loop = loop }
}
