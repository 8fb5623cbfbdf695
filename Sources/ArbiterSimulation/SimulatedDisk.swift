import ArbiterCore

/// A node's log as a crash sees it.
///
/// Every write appends one entry (one local transaction). A force makes every entry up to that
/// point durable, as an fsync of SQLite's write-ahead log does. A crash keeps the durable entries
/// and keeps or loses each other entry at random — harsher than SQLite, which loses only a suffix,
/// so that the protocol is shown not to depend on the order in which lazy writes reach the disk.
struct SimulatedDisk<Record> {
    struct Entry {
        var records: [Record]
        var durable: Bool
    }

    private(set) var entries: [Entry] = []

    mutating func append(_ records: [Record]) {
        entries.append(Entry(records: records, durable: false))
    }

    /// An fsync: everything written so far is durable.
    mutating func sync() {
        var index = entries.count - 1
        // Entries before a durable one are durable too, so stop at the first.
        while index >= 0 && !entries[index].durable {
            entries[index].durable = true
            index -= 1
        }
    }

    /// A crash. Returns how many entries were lost.
    mutating func crash(random: inout SplitMix64) -> Int {
        let before = entries.count
        entries = entries.filter { $0.durable || Bool.random(using: &random) }
        for index in entries.indices { entries[index].durable = true }
        return before - entries.count
    }

    /// Deletes the records that `shouldRemove` selects (retention cleanup).
    mutating func remove(where shouldRemove: (Record) -> Bool) {
        for index in entries.indices { entries[index].records.removeAll(where: shouldRemove) }
        entries.removeAll { $0.records.isEmpty }
    }

    var records: [Record] { entries.flatMap(\.records) }
    var durableRecords: [Record] { entries.filter(\.durable).flatMap(\.records) }
}
