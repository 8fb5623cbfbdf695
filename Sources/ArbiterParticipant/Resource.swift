public import ArbiterCore
import ArbiterStorage
public import GRDB

/// The business side of a participant: what a branch's payload means to this service, and how to
/// stage, apply and discard it in the service's own SQLite tables.
///
/// A resource never talks to the network, never commits, and never waits. The participant library
/// calls its hooks inside ONE local database transaction that also writes Arbiter's protocol
/// record, so that the business change and the protocol state that covers it are one fact: either
/// both are on disk or neither is.
///
/// - ``stage(_:in:)`` runs at `prepare`: check the payload against the current state, take key
///   locks with ``StageContext/lock(_:)``, write intents or reservations, and vote. It runs in a
///   savepoint: a throw, or a vote other than `yes`, rolls back everything it wrote (locks
///   included), and a throw becomes a `no` vote naming the error.
/// - ``apply(_:in:)`` runs when the transaction commits: turn the staged intents into the real
///   change. It must not refuse: the participant promised at `prepare` that it could commit. If it
///   throws anyway, the change is retried (and logged) until it succeeds; the transaction stays
///   prepared and locked meanwhile.
/// - ``discard(_:in:)`` runs when a transaction that was staged aborts: drop the intents.
///
/// Each hook gets the payload decoded again from the bytes recorded at `prepare`, so the three must
/// agree on what a payload means across restarts: change ``Payload``'s format only in ways that
/// still decode the payloads of transactions in doubt.
///
/// The bank example (`examples/bank/Sources/BankExample/BankResource.swift`) is the reference
/// implementation; `docs/participant-guide.md` walks through it.
public protocol Resource: Sendable {
    /// A branch's instructions, decoded from the payload's JSON bytes with the wire protocol's
    /// strict decoder (`WireJSON`). A payload that does not decode is refused with a `no` vote
    /// naming the field at fault, and the resource's hooks are not called.
    associatedtype Payload: Decodable & Sendable

    /// Registers the resource's own migrations (its tables). They run once each, in registration
    /// order, after Arbiter's own (`arbiter.participant.v1`), every time the node opens its
    /// database. Identifiers must not start with `arbiter.`.
    ///
    /// Never change a migration once released: add a new one. A database is never erased.
    func migrate(_ migrator: inout DatabaseMigrator)

    /// Stages `payload` for the transaction in `context` and votes.
    ///
    /// Return `.yes` when the change is staged and will certainly apply, `.no(reason:)` to refuse
    /// (the reason reaches the client), or `.readOnly` when the branch changes nothing (it then
    /// leaves phase 2; nothing it wrote is kept).
    ///
    /// - Throws: anything; the savepoint is rolled back and the vote is `no` with the error's
    ///   description. ``LockConflict`` from ``StageContext/lock(_:)`` becomes a `no` naming the key
    ///   and its holder.
    func stage(_ payload: Payload, in context: StageContext) throws -> Vote

    /// Applies a staged `payload`: the transaction committed. The transaction's locks are released
    /// after this returns, in the same local transaction.
    func apply(_ payload: Payload, in context: OutcomeContext) throws

    /// Drops a staged `payload`: the transaction aborted after it was staged. The transaction's
    /// locks are released after this returns, in the same local transaction.
    func discard(_ payload: Payload, in context: OutcomeContext) throws
}

/// What ``Resource/stage(_:in:)`` works with: the local database transaction and the protocol
/// transaction it stages for.
///
/// Valid only during the call: don't keep it or its database.
public struct StageContext {
    /// The distributed transaction being prepared.
    public let txid: TxID
    /// The local SQLite transaction that will also record `prepared`. Don't begin, commit or roll
    /// back transactions in it (nested savepoints are fine).
    public let db: Database
    let store: ParticipantStore

    init(txid: TxID, db: Database, store: ParticipantStore) {
        self.txid = txid
        self.db = db
        self.store = store
    }

    /// Takes the lock on `key` for this transaction, without waiting.
    ///
    /// The lock is kept in SQLite with the prepared record: it survives a restart and is released
    /// when the transaction commits or aborts. Taking a key the transaction already holds is fine.
    /// Name keys so that they cannot collide across kinds of things (`account:alice`).
    ///
    /// - Throws: ``LockConflict`` when another transaction holds the key. Let it propagate: the
    ///   vote becomes `no` at once (no waiting, so no distributed deadlock), and the client may
    ///   retry. Also `StorageError` for an empty key or one over 1024 bytes.
    public func lock(_ key: String) throws {
        switch try store.lock(key, for: txid, in: db) {
        case .acquired, .alreadyHeld:
            return
        case .conflict(let holder):
            throw LockConflict(key: key, holder: holder)
        }
    }
}

/// What ``Resource/apply(_:in:)`` and ``Resource/discard(_:in:)`` work with.
///
/// Valid only during the call: don't keep it or its database.
public struct OutcomeContext {
    /// The distributed transaction being applied or discarded.
    public let txid: TxID
    /// The local SQLite transaction that also records the outcome. Don't begin, commit or roll
    /// back transactions in it (nested savepoints are fine).
    public let db: Database
    /// Whether an operator decided this outcome alone (a heuristic decision), rather than the
    /// coordinator.
    public let isHeuristic: Bool

    init(txid: TxID, db: Database, isHeuristic: Bool) {
        self.txid = txid
        self.db = db
        self.isHeuristic = isHeuristic
    }
}

/// Another transaction holds a key that ``StageContext/lock(_:)`` asked for.
///
/// Thrown out of ``Resource/stage(_:in:)``, it becomes the vote `no` with ``description`` as the
/// reason.
public struct LockConflict: Error, Hashable, Sendable, CustomStringConvertible {
    /// The key asked for.
    public let key: String
    /// The transaction that holds it.
    public let holder: TxID

    /// Makes the error (the library throws it; resources rarely need to).
    public init(key: String, holder: TxID) {
        self.key = key
        self.holder = holder
    }

    /// The `no` vote's reason: the key, its holder, and that a retry may succeed.
    public var description: String {
        "\(key) is locked by transaction \(holder); retry when it has ended"
    }
}
