public import ArbiterCore
public import Synchronization

/// Keeps any number of protocol timers in one heap, for one loop to fire (``takeDue()``, then sleep
/// ``pollInterval``).
///
/// The state machines set and cancel timers by id (thousands at a time under load: a deadline per
/// transaction, a retry per unacknowledged decision); a task per timer would cost far more than one
/// heap and one loop. Timers fire within ``resolution`` of their deadline, which is ample for
/// protocol timeouts measured in hundreds of milliseconds. The loop sleeps until the earliest timer
/// is due, but at most ``idlePollMax``: a timer set meanwhile for an earlier time fires up to that
/// late. An idle service wakes ``idlePollMax`` apart instead of ``resolution`` apart.
///
/// Setting an id that is already set replaces it; a replaced or cancelled timer never fires.
///
/// Its hot methods are inlinable, so that each service gets them specialised for its timer ids.
public final class TimerService<ID: Hashable & Sendable>: Sendable {
    @usableFromInline
    struct State: ~Copyable {
        @usableFromInline var queue = ScheduleQueue<(id: ID, generation: UInt64)>()
        @usableFromInline var generations: [ID: UInt64] = [:]
        @usableFromInline var nextGeneration: UInt64 = 0

        @usableFromInline
        init() {}
    }

    /// How late a timer may fire while the loop is busy (timers due one after another).
    public let resolution: Duration
    /// How long the loop may sleep when no timer is due sooner; also how late a timer set during
    /// such a sleep may fire.
    public let idlePollMax: Duration
    @usableFromInline let clock = ContinuousClock()
    @usableFromInline let origin: ContinuousClock.Instant
    @usableFromInline let state = Mutex(State())

    public init(resolution: Duration = .milliseconds(5), idlePollMax: Duration = .milliseconds(25)) {
        precondition(resolution > .zero && idlePollMax >= resolution, "0 < resolution <= idlePollMax")
        self.resolution = resolution
        self.idlePollMax = idlePollMax
        self.origin = clock.now
    }

    /// Sets (or replaces) timer `id` to fire after `delay`.
    @inlinable
    public func set(_ id: ID, after delay: Duration) {
        let due = nanoseconds(clock.now + delay)
        state.withLock { state in
            state.nextGeneration += 1
            state.generations[id] = state.nextGeneration
            state.queue.schedule((id, state.nextGeneration), at: due)
        }
    }

    /// Cancels timer `id`, if set.
    @inlinable
    public func cancel(_ id: ID) {
        _ = state.withLock { $0.generations.removeValue(forKey: id) }
    }

    /// How many timers are set.
    public var count: Int { state.withLock { $0.generations.count } }

    /// Removes and returns the timers due by now, earliest first.
    @inlinable
    public func takeDue() -> [ID] {
        let now = nanoseconds(clock.now)
        return state.withLock { state in
            var due: [ID] = []
            while let next = state.queue.nextTime, next <= now, let (_, entry) = state.queue.pop() {
                // Skip entries that were cancelled or replaced since they were scheduled.
                guard state.generations[entry.id] == entry.generation else { continue }
                state.generations[entry.id] = nil
                due.append(entry.id)
            }
            return due
        }
    }

    /// How long a loop may sleep before the next ``takeDue()``: until the earliest timer is due,
    /// clamped to ``resolution`` ... ``idlePollMax``. (Cancelled timers stay in the heap until their
    /// time, so they may wake the loop for nothing; they never fire.)
    public var pollInterval: Duration {
        let now = nanoseconds(clock.now)
        let next = state.withLock { $0.queue.nextTime }
        guard let next else { return idlePollMax }
        let wait = Duration.nanoseconds(max(0, next - now))
        return min(max(wait, resolution), idlePollMax)
    }

    @usableFromInline
    func nanoseconds(_ instant: ContinuousClock.Instant) -> Int64 {
        let (seconds, attoseconds) = (instant - origin).components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
