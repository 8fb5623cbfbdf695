import ArbiterCore

/// A service loop's clock and timers: the machine's timers (by ``TimerID``; setting one again
/// replaces it, and a cancelled one never fires) and the loop's own (`Own`), in one
/// ``ScheduleQueue`` keyed by the loop's ticks of the monotonic clock.
///
/// Time only moves when the loop is told (``advance(to:)``): the service's loop thread passes the
/// monotonic clock, the simulator its simulated one.
struct LoopTimers<Own> {
    /// A timer that is due.
    enum Due {
        case machine(TimerID)
        case own(Own)
    }

    private enum Entry {
        case machine(TimerID, generation: UInt64)
        case own(Own)
    }

    /// The loop's time: the latest tick it was given.
    private(set) var now: Duration = .zero
    private var queue = ScheduleQueue<Entry>()
    /// The live setting of each machine timer; an entry of another generation is stale.
    private var generations: [TimerID: UInt64] = [:]
    private var nextGeneration: UInt64 = 0

    /// Moves the clock to `time` (never back).
    mutating func advance(to time: Duration) {
        now = max(now, time)
    }

    /// Sets the machine's timer `id` to fire `delay` from now, replacing an earlier setting.
    mutating func set(_ id: TimerID, after delay: Duration) {
        nextGeneration += 1
        generations[id] = nextGeneration
        queue.schedule(.machine(id, generation: nextGeneration), at: (now + delay).nanosecondsSinceOrigin)
    }

    /// Cancels the machine's timer `id` (its entry stays in the queue and is skipped).
    mutating func cancel(_ id: TimerID) {
        generations[id] = nil
    }

    /// Schedules one of the loop's own timers `delay` from now.
    mutating func schedule(_ timer: Own, after delay: Duration) {
        queue.schedule(.own(timer), at: (now + delay).nanosecondsSinceOrigin)
    }

    /// The next timer due by now, if any, in due order; cancelled and replaced machine timers are
    /// skipped.
    mutating func popDue() -> Due? {
        while let (time, entry) = queue.first, time <= now.nanosecondsSinceOrigin {
            _ = queue.pop()
            switch entry {
            case .machine(let id, let generation):
                guard generations[id] == generation else { continue }
                generations[id] = nil
                return .machine(id)
            case .own(let timer):
                return .own(timer)
            }
        }
        return nil
    }

    /// When the earliest timer is due (`nil` when none is set).
    var nextDeadline: Duration? { queue.nextTime.map { Duration.nanoseconds($0) } }
}

extension Duration {
    /// This duration in nanoseconds, as the loops' timer queues count time from the loop's origin.
    var nanosecondsSinceOrigin: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
