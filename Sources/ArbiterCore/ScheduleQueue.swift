/// A min-heap of scheduled items ordered by time, then by insertion, so that two items due at the
/// same instant come out in the order they were scheduled (which keeps the simulator deterministic).
///
/// Time is an integer in whatever unit the owner chooses (microseconds in the simulator,
/// nanoseconds in the services' timer loop).
///
/// Inlinable, so that other modules (the services' timer loops) get code specialised for their
/// item type instead of generic code that copies every item through its value witnesses.
public struct ScheduleQueue<Item> {
    @usableFromInline
    struct Entry {
        @usableFromInline var time: Int64
        @usableFromInline var sequence: UInt64
        @usableFromInline var item: Item

        @inlinable
        init(time: Int64, sequence: UInt64, item: Item) {
            self.time = time
            self.sequence = sequence
            self.item = item
        }

        @inlinable
        func precedes(_ other: Entry) -> Bool { (time, sequence) < (other.time, other.sequence) }
    }

    @usableFromInline var heap: [Entry] = []
    @usableFromInline var nextSequence: UInt64 = 0

    @inlinable
    public init() {}

    @inlinable
    public var isEmpty: Bool { heap.isEmpty }
    @inlinable
    public var count: Int { heap.count }
    /// When the earliest item is due.
    @inlinable
    public var nextTime: Int64? { heap.first?.time }
    /// The earliest item, left in place.
    @inlinable
    public var first: (time: Int64, item: Item)? { heap.first.map { ($0.time, $0.item) } }

    @inlinable
    public mutating func schedule(_ item: Item, at time: Int64) {
        heap.append(Entry(time: time, sequence: nextSequence, item: item))
        nextSequence += 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest item.
    @inlinable
    public mutating func pop() -> (time: Int64, item: Item)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let entry = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < heap.count && heap[left].precedes(heap[first]) { first = left }
            if right < heap.count && heap[right].precedes(heap[first]) { first = right }
            if first == parent { break }
            heap.swapAt(parent, first)
            parent = first
        }
        return (entry.time, entry.item)
    }

    /// Removes and returns, in order, every item that `shouldRemove` selects (scripted scenarios
    /// drop or hold back messages with this).
    public mutating func removeAll(where shouldRemove: (Item) -> Bool) -> [(time: Int64, item: Item)] {
        let ordered = heap.sorted(by: { $0.precedes($1) })
        heap = ordered.filter { !shouldRemove($0.item) }  // A sorted array is a valid heap.
        return ordered.filter { shouldRemove($0.item) }.map { ($0.time, $0.item) }
    }

    /// The scheduled items in the order they will run.
    public var ordered: [Item] { heap.sorted(by: { $0.precedes($1) }).map(\.item) }
}
