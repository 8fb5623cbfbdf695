public import ArbiterStorage
public import GRDB

/// The participant's SQLite database, for the embedding service's own reads and writes (its routes,
/// reports, opening accounts…) outside the two-phase-commit protocol.
///
/// It shares the node's single writer, so the service's writes take turns with the protocol's
/// rounds, each in a transaction of its own. Writes here are local and immediate: anything that must be atomic
/// with other services goes through a distributed transaction (the resource's hooks) instead.
public struct ParticipantDatabase: Sendable {
    /// Arbiter's protocol state in this database (transactions, locks), for reading. Don't write
    /// records through it: the node's state machine owns them.
    public let store: ParticipantStore

    init(store: ParticipantStore) {
        self.store = store
    }

    /// The database file.
    public var path: String { store.writer.path }

    /// Reads a consistent snapshot, concurrently with the writer.
    public func read<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await store.writer.read(work)
    }

    /// Runs `work` in a transaction of its own on the writer's queue and returns once it is durable
    /// (`.forced`, the default) or visible (`.lazy`). If `work` throws, nothing of it is applied and
    /// the error is thrown here.
    public func write<T: Sendable>(
        _ durability: Durability = .forced,
        _ work: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        try await store.write(durability, work)
    }
}
