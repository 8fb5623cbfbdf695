import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import ArbiterStorage
import GRDB
import Tracing

/// The participant loop's ``ParticipantStorage`` in production: the participant's SQLite database,
/// where the resource's own tables and Arbiter's protocol records live side by side, so that a
/// staged change and its `prepared` record commit in one local transaction.
///
/// A round is one transaction on the writer's connection (``StoreWriter/writeNow(_:_:)``,
/// on the loop's thread); each piece of work runs in a savepoint of its own, so a piece that fails
/// is rolled back alone and the rest of the round stands.
///
/// Used by the loop's thread only.
final class SQLiteParticipantStorage<R: Resource>: ParticipantStorage {
    let resource: R
    let store: ParticipantStore
    /// How long ended transactions are kept (``ArbiterCore/ParticipantConfig/retention``).
    let retention: Duration
    /// The trace context of a transaction's latest message, for its stage and apply spans.
    let traceContext: @Sendable (TxID) -> ServiceContext?
    /// The payloads decoded at the stage of transactions that voted yes, with the bytes they were
    /// decoded from, so that the commit (or abort) that follows does not decode them again. Used
    /// only when the bytes the store holds are the same; an entry goes at the transaction's end.
    private var decodedPayloads: [TxID: (bytes: [UInt8], payload: R.Payload)] = [:]
    /// A bound on ``decodedPayloads``, should ends go missing (the cache is emptied past it).
    private static var decodedPayloadCountMax: Int { 100_000 }
    /// Deleted per page of the retention sweep: a few milliseconds of the writer, not a round's worth.
    static var sweepPage: Int { 1000 }

    init(resource: R, store: ParticipantStore, retention: Duration, traceContext: @escaping @Sendable (TxID) -> ServiceContext?) {
        self.resource = resource
        self.store = store
        self.retention = retention
        self.traceContext = traceContext
    }

    func commit(_ work: [ParticipantWork], forced: Bool) throws -> [ParticipantWorkResult] {
        let results = try store.writer.writeNow(forced ? .forced : .lazy, pieces: work.count) { db in
            work.map { piece in perform(piece, in: db) }
        }
        // Between the force and the answers: a crash here leaves durable records nobody was told of.
        // (Crash tests only: nothing to look at when no failpoint is set.)
        guard Failpoints.isEnabled else { return results }
        for (piece, result) in zip(work, results) {
            switch (piece, result) {
            case (.stage(let staging), .staged(let vote)):
                let written = staging.records(for: vote).records
                if written.contains(where: \.isPrepared) { try? Failpoints.hitSync("participant.after-prepare-force") }
                if written.contains(where: \.isCommitted) { try? Failpoints.hitSync("participant.after-commit-force") }
            case (.records(let records, true), .written) where records.contains(where: \.isCommitted):
                try? Failpoints.hitSync("participant.after-commit-force")
            default:
                break
            }
        }
        return results
    }

    func lookup(_ txids: [TxID]) throws -> [[ParticipantRecord]] {
        try store.writer.readOnWriter { db in try txids.map { try store.transaction($0, in: db)?.records ?? [] } }
    }

    func recover() throws -> [ParticipantRecord] {
        try store.recoverNow()
    }

    func forgetEnded() throws -> Bool {
        try store.forgetEndedNow(olderThan: retention, limit: Self.sweepPage) == Self.sweepPage
    }

    // MARK: - Inside the round's transaction

    private func perform(_ piece: ParticipantWork, in db: Database) -> ParticipantWorkResult {
        switch piece {
        case .stage(let staging):
            return stage(staging, in: db)
        case .records(let records, _):
            do {
                try db.inPreparedSavepoint {
                    for record in records { try write(record, in: db) }
                    return .commit
                }
                return .written
            } catch {
                return .failed("\(error)")
            }
        }
    }

    /// Looks the transaction up first (one primary-key read, in this same transaction): if it ended
    /// here and memory forgot it, nothing is staged. Otherwise stages in a savepoint, keeps or rolls
    /// back the staged change as the vote says, and writes the vote's records with it.
    private func stage(_ staging: PrepareRequest, in db: Database) -> ParticipantWorkResult {
        let txid = staging.txid
        var result = ParticipantWorkResult.failed("staging produced no vote")
        do {
            try db.inPreparedSavepoint {
                if let recorded = try store.transaction(txid, in: db) {
                    result = .alreadyRecorded(recorded.records)
                    return .commit
                }
                var staged: (vote: Vote, effects: StagedRecords)?
                try db.inPreparedSavepoint {
                    let vote = stageVote(staging, in: db)
                    let effects = staging.records(for: vote)
                    staged = (vote, effects)
                    return effects.keepsStagedWork ? .commit : .rollback
                }
                guard let staged else { return .rollback }
                let effects = staged.effects
                if Failpoints.isEnabled {
                    if effects.records.contains(where: \.isPrepared) { try Failpoints.hitSync("participant.before-prepare-force") }
                    if effects.records.contains(where: \.isCommitted) { try Failpoints.hitSync("participant.before-commit-force") }
                }
                for record in effects.records { try store.apply(record, in: db) }
                result = .staged(staged.vote)
                return .commit
            }
        } catch {
            decodedPayloads[txid] = nil
            return .failed("\(error)")
        }
        return result
    }

    /// Decodes the payload and runs the resource's stage (and, in one phase, its apply); every
    /// refusal or error becomes a `no` vote with a reason.
    private func stageVote(_ staging: PrepareRequest, in db: Database) -> Vote {
        let txid = staging.txid
        let decoded: R.Payload
        do {
            decoded = try WireJSON.decode(R.Payload.self, from: staging.payload.bytes)
        } catch {
            return .no(reason: Self.reason("the payload does not fit this participant: \(error.message)"))
        }
        do {
            let vote = try traced("stage", txid) { try resource.stage(decoded, in: StageContext(txid: txid, db: db, store: store)) }
            if case .yes = vote {
                if staging.records(for: vote).applies {
                    try traced("apply", txid) { try resource.apply(decoded, in: OutcomeContext(txid: txid, db: db, isHeuristic: false)) }
                } else {
                    if decodedPayloads.count >= Self.decodedPayloadCountMax { decodedPayloads.removeAll() }
                    decodedPayloads[txid] = (staging.payload.bytes, decoded)
                }
            }
            if case .no(let reason) = vote {
                return .no(reason: Self.reason(reason.isEmpty ? "refused by the resource" : reason))
            }
            return vote
        } catch let conflict as LockConflict {
            return .no(reason: Self.reason(conflict.description))
        } catch {
            return .no(reason: Self.reason("staging failed: \(error)"))
        }
    }

    /// A reason short enough for a reply and a log line.
    private static func reason(_ text: String) -> String {
        let limit = 1000
        guard text.utf8.count > limit else { return text }
        return String(decoding: text.utf8.prefix(limit), as: UTF8.self) + "…"
    }

    /// Writes one record with the resource work it stands for: `committed` applies what was staged,
    /// `aborted` discards it (or is a tombstone when nothing was).
    private func write(_ record: ParticipantRecord, in db: Database) throws {
        switch record {
        case .prepared:
            preconditionFailure("a prepared record outside a stage")
        case .committed(let txid, let heuristic):
            try Failpoints.hitSync("participant.before-commit-force")
            if let payload = try stagedPayload(of: txid, in: db) {
                try traced("apply", txid) { try resource.apply(payload, in: OutcomeContext(txid: txid, db: db, isHeuristic: heuristic)) }
            }
            try store.apply(record, in: db)
        case .aborted(let txid, let heuristic):
            if let payload = try stagedPayload(of: txid, in: db) {
                try traced("discard", txid) { try resource.discard(payload, in: OutcomeContext(txid: txid, db: db, isHeuristic: heuristic)) }
            }
            try store.apply(record, in: db)
        }
    }

    /// The decoded payload of `txid` when it is prepared here (staged and not yet ended): the one
    /// decoded at its stage when the store holds the same bytes, else decoded from the store.
    private func stagedPayload(of txid: TxID, in db: Database) throws -> R.Payload? {
        let cached = decodedPayloads.removeValue(forKey: txid)
        guard let payload = try store.preparedPayload(of: txid, in: db) else { return nil }
        if let cached, cached.bytes == payload.bytes { return cached.payload }
        do {
            return try WireJSON.decode(R.Payload.self, from: payload.bytes)
        } catch {
            throw StagedPayloadError(txid: txid, detail: error.description)
        }
    }

    /// Runs `work` in a span named `name` when `txid` has a trace context and a tracer records.
    private func traced<T>(_ name: String, _ txid: TxID, _ work: () throws -> T) rethrows -> T {
        guard let span = WireTracing.startSpan(name, context: traceContext(txid)) else { return try work() }
        span.attributes["arbiter.txid"] = txid.rawValue
        defer { span.end() }
        do {
            return try work()
        } catch {
            span.recordError(error)
            throw error
        }
    }
}

/// The payload recorded when a transaction was prepared no longer decodes (the resource's payload
/// type changed in a way that breaks transactions in doubt).
struct StagedPayloadError: Error, CustomStringConvertible {
    var txid: TxID
    var detail: String
    var description: String {
        "the payload recorded when \(txid) was prepared no longer decodes (\(detail)); restore a build whose Payload decodes it"
    }
}

extension ParticipantRecord {
    var isPrepared: Bool { if case .prepared = self { true } else { false } }
    var isCommitted: Bool { if case .committed = self { true } else { false } }
}
