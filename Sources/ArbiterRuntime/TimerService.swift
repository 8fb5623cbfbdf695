public import ArbiterCore
public import Synchronization

/// Keeps any number of protocol timers in one queue, for one loop to fire (``takeDue()``, then sleep
/// ``pollInterval``).
///
/// The state machines set and cancel timers by id (thousands at a time under load: a deadline per
/// transaction, a retry per unacknowledged decision); a task per timer would cost far more than one
/// queue and one loop. Timers fire within ``resolution`` of their deadline, which is ample for
/// protocol timeouts measured in hundreds of milliseconds. The loop sleeps until the earliest timer
/// is due, but at most ``idlePollMax``: a timer set meanwhile for an earlier time fires up to that
/// late. An idle service wakes ``idlePollMax`` apart instead of ``resolution`` apart.
///
/// Setting an id that is already set replaces it; a replaced or cancelled timer never fires.
///
/// The timers are kept in a ``TimerQueue``; its hot methods, and these, are inlinable, so that each
/// service gets them specialised for its timer ids.
public final class TimerService<ID: Hashable & Sendable>: Sendable {
    /// How late a timer may fire while the loop is busy (timers due one after another).
    public let resolution: Duration
    /// How long the loop may sleep when no timer is due sooner; also how late a timer set during
    /// such a sleep may fire.
    public let idlePollMax: Duration
    @usableFromInline let clock = ContinuousClock()
    @usableFromInline let origin: ContinuousClock.Instant
    @usableFromInline let state = Mutex(TimerQueue<ID>())

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
        state.withLock { $0.set(id, due: due) }
    }

    /// Cancels timer `id`, if set.
    @inlinable
    public func cancel(_ id: ID) {
        state.withLock { $0.cancel(id) }
    }

    /// How many timers are set.
    public var count: Int { state.withLock { $0.count } }

    /// Removes and returns the timers due by now, earliest first.
    @inlinable
    public func takeDue() -> [ID] {
        let now = nanoseconds(clock.now)
        return state.withLock { $0.takeDue(now: now) }
    }

    /// How long a loop may sleep before the next ``takeDue()``: until the earliest timer is due,
    /// clamped to ``resolution`` ... ``idlePollMax``. (Cancelled timers stay queued until their
    /// time, so they may wake the loop for nothing; they never fire.)
    public var pollInterval: Duration {
        let now = nanoseconds(clock.now)
        let next = state.withLock { $0.nextDue }
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

/// The timers of a ``TimerService``, by due time in integer nanoseconds (or any unit): a pure
/// structure, tested on its own against a plain model.
///
/// A service's timers come mostly in streams with one delay each (a prepare deadline per
/// transaction, a retention per ended transaction), set in the order of their due times. A binary
/// heap of all of them (tens of thousands under load: a participant keeps an ended transaction's
/// retention for 30 s) paid a logarithmic, cache-missing sift on every timer. Here a timer goes to
/// the end of a *lane*, a first-in first-out list whose times never decrease: the lane whose last
/// time is the latest one not after the new timer's. A stream of one delay therefore keeps
/// appending to one lane, and setting and firing cost a constant. Timers that fit no lane, when
/// ``laneCountMax`` lanes are in use, go to a heap. Firing takes the earliest of the lanes' heads
/// and the heap's top each time, so timers come out in order of due time, then of setting.
///
/// A cancelled or replaced timer stays queued until its time and is then skipped: its entry no
/// longer matches the id's current generation.
public struct TimerQueue<ID: Hashable>: ~Copyable {
    @usableFromInline
    struct Entry {
        @usableFromInline var due: Int64
        /// Unique per ``set(_:due:)``, increasing: the tie-break between equal times, and how a
        /// cancelled or replaced entry is recognised.
        @usableFromInline var generation: UInt64
        @usableFromInline var id: ID

        @inlinable
        init(due: Int64, generation: UInt64, id: ID) {
            self.due = due
            self.generation = generation
            self.id = id
        }

        @inlinable
        func precedes(_ other: Entry) -> Bool { (due, generation) < (other.due, other.generation) }
    }

    /// Entries in the order of their times: appended at the end, taken from `head`.
    @usableFromInline
    struct Lane {
        @usableFromInline var entries: [Entry] = []
        @usableFromInline var head = 0

        @inlinable
        init() {}

        @inlinable
        var first: Entry? { head < entries.count ? entries[head] : nil }
        @inlinable
        var lastDue: Int64? { head < entries.count ? entries[entries.count - 1].due : nil }

        @inlinable
        mutating func removeFirst() {
            head += 1
            if head == entries.count {
                entries.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1_024 && head * 2 >= entries.count {
                entries.removeFirst(head)  // Amortised: at most once per as many entries taken.
                head = 0
            }
        }
    }

    /// How many lanes at most; timers that fit none go to the heap.
    public static var laneCountMax: Int { 8 }

    @usableFromInline var lanes: [Lane] = []
    @usableFromInline var heap = ScheduleQueue<Entry>()
    @usableFromInline var generations: [ID: UInt64] = [:]
    @usableFromInline var nextGeneration: UInt64 = 0

    @inlinable
    public init() {}

    /// How many timers are set (not counting cancelled or replaced entries still queued).
    @inlinable
    public var count: Int { generations.count }

    /// Entries queued, cancelled and replaced ones included.
    public var queuedCount: Int { heap.count + lanes.reduce(0) { $0 + $1.entries.count - $1.head } }

    /// Sets (or replaces) timer `id` to fire at `due`.
    @inlinable
    public mutating func set(_ id: ID, due: Int64) {
        nextGeneration += 1
        generations[id] = nextGeneration
        let entry = Entry(due: due, generation: nextGeneration, id: id)
        var chosen: Int? = nil
        var chosenLast = Int64.min
        var empty: Int? = nil
        for index in lanes.indices {
            if let last = lanes[index].lastDue {
                if last <= due && (chosen == nil || last > chosenLast) {
                    chosen = index
                    chosenLast = last
                }
            } else if empty == nil {
                empty = index
            }
        }
        if let lane = chosen ?? empty {
            lanes[lane].entries.append(entry)
        } else if lanes.count < Self.laneCountMax {
            var lane = Lane()
            lane.entries.append(entry)
            lanes.append(lane)
        } else {
            heap.schedule(entry, at: due)
        }
    }

    /// Cancels timer `id`, if set.
    @inlinable
    public mutating func cancel(_ id: ID) {
        generations.removeValue(forKey: id)
    }

    /// When the earliest queued entry is due (possibly a cancelled one).
    @inlinable
    public var nextDue: Int64? { earliest()?.entry.due }

    /// The earliest queued entry: the least of the heap's top and the lanes' heads, with its lane
    /// (`nil`: the heap's).
    @inlinable
    func earliest() -> (entry: Entry, lane: Int?)? {
        var earliest = heap.first.map { (entry: $0.item, lane: Int?.none) }
        for index in lanes.indices {
            guard let head = lanes[index].first else { continue }
            if let current = earliest, !head.precedes(current.entry) { continue }
            earliest = (head, index)
        }
        return earliest
    }

    /// Removes and returns the timers due by `now`, earliest first.
    @inlinable
    public mutating func takeDue(now: Int64) -> [ID] {
        var due: [ID] = []
        while let (entry, lane) = earliest(), entry.due <= now {
            if let lane {
                lanes[lane].removeFirst()
            } else {
                _ = heap.pop()
            }
            // Skip entries that were cancelled or replaced since they were set.
            guard generations[entry.id] == entry.generation else { continue }
            generations[entry.id] = nil
            due.append(entry.id)
        }
        return due
    }
}
