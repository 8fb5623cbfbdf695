import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import ArbiterStorage
import Foundation
import NIOCore
import PostgresNIO
import Synchronization

/// The participant loop's ``ArbiterRuntime/ParticipantStorage`` on PostgreSQL.
///
/// A round's pieces run concurrently on the worker connections (the pieces of one transaction in
/// order, on one connection), while the loop's thread waits for all of them:
///
/// - a two-phase stage writes the transaction's row (`prepared`, with its coordinator and payload;
///   lazily), then `BEGIN`, the resource's stage, the marker (the row updated to `committed`
///   inside the transaction) and `PREPARE TRANSACTION '<prefix>:<txid>'`, which PostgreSQL flushes
///   to disk with everything before it in the WAL. A `no` rolls back and records `aborted`
///   (lazily); a read-only vote rolls back and deletes the row;
/// - a one-phase stage runs the stage and the `committed` row in one transaction committed with
///   `synchronous_commit` on;
/// - `committed` is `COMMIT PREPARED` (the marker becomes visible), `aborted` is
///   `ROLLBACK PREPARED` and the row updated, or a tombstone row for a transaction never prepared
///   here.
///
/// A piece that fails is retried by the loop; each is idempotent: a `COMMIT PREPARED` whose answer
/// was lost finds the gid gone and the marker committed, and a stage whose `PREPARE TRANSACTION`
/// was sent when its connection broke first asks `pg_prepared_xacts` for its gid.
///
/// Used by the loop's thread only.
final class PostgresParticipantStorage<R: PostgresResource>: ParticipantStorage {
    let resource: R
    let workers: Workers
    let prefix: String
    let preparedCountMax: Int
    let retention: Duration
    let statistics: SharedStatistics
    let logger: Logger

    /// The transactions PostgreSQL holds prepared for this node (recovered at start, then kept).
    private var preparedHere: Set<TxID> = []
    /// Stages whose `PREPARE TRANSACTION` was sent but not answered (the connection broke).
    private var uncertain: Set<TxID> = []
    /// Transactions committed by earlier rounds whose rows still carry the prepare's time as
    /// `ended_at`: set to the time of the next round, in one statement beside its work, so that
    /// retention counts from the end as with SQLite. Lost in a crash, the prepare's time stays
    /// (retention then counts from the prepare).
    private var endedTimes: [TxID] = []

    /// Deleted per page of the retention sweep.
    static var sweepPage: Int { 1000 }

    init(resource: R, workers: Workers, prefix: String, preparedCountMax: Int, retention: Duration,
         statistics: SharedStatistics, logger: Logger) {
        self.resource = resource
        self.workers = workers
        self.prefix = prefix
        self.preparedCountMax = preparedCountMax
        self.retention = retention
        self.statistics = statistics
        self.logger = logger
    }

    // MARK: - ParticipantStorage

    func commit(_ work: [ParticipantWork], forced: Bool) throws -> [ParticipantWorkResult] {
        let started = ContinuousClock.now
        // Each piece's inputs, read from memory on this thread.
        var room = preparedCountMax - preparedHere.count
        var plans: [Plan] = []
        plans.reserveCapacity(work.count)
        for piece in work {
            switch piece {
            case .stage(let request):
                let hasRoom = request.onePhase || room > 0
                if !request.onePhase && hasRoom { room -= 1 }
                plans.append(.stage(request, uncertain: uncertain.contains(request.txid), hasRoom: hasRoom, row: .unwritten))
            case .records(let records, let forced):
                let txid = records[0].txid
                plans.append(.records(records, forced: forced, prepared: preparedHere.contains(txid) || uncertain.contains(txid)))
            }
        }
        writeInDoubtRows(&plans)
        // The pieces of one transaction in order on one worker; transactions concurrently.
        var groups: [TxID: [Int]] = [:]
        var order: [TxID] = []
        for (index, plan) in plans.enumerated() {
            if groups[plan.txid] == nil { order.append(plan.txid) }
            groups[plan.txid, default: []].append(index)
        }
        let outcomes = Outcomes(count: plans.count)
        let context = PieceContext(resource: resource, prefix: prefix, preparedCountMax: preparedCountMax)
        let frozen = plans
        var jobs = order.map { txid -> Workers.Job in
            let indices = groups[txid]!
            return { connection in
                for index in indices {
                    outcomes.set(index, context.run(frozen[index], on: connection))
                }
            }
        }
        if !endedTimes.isEmpty {
            let ended = endedTimes.map(\.rawValue)
            endedTimes.removeAll(keepingCapacity: true)
            jobs.append { connection in
                // Best effort: on failure the prepare's time stays.
                _ = try? connection.run("""
                    UPDATE arbiter_participant_transaction SET ended_at = now() WHERE txid = ANY(\(ended)) AND state = 'committed'
                    """)
            }
        }
        workers.runAll(jobs)
        let results = outcomes.all()
        var unavailable = 0
        var flushes = 0
        var lazy = 0
        for (plan, outcome) in zip(plans, results) {
            let txid = plan.txid
            // A stage stays uncertain until one of its tries ends (a failed check of the gid
            // tells nothing).
            if outcome.uncertain {
                uncertain.insert(txid)
            } else if case .failed = outcome.result {
            } else {
                uncertain.remove(txid)
            }
            switch outcome.prepared {
            case true?: preparedHere.insert(txid)
            case false?: preparedHere.remove(txid)
            case nil: break
            }
            if outcome.unavailable { unavailable += 1 }
            if outcome.committedAt { endedTimes.append(txid) }
            flushes += outcome.flushes
            lazy += outcome.lazyCommits
        }
        statistics.record(pieces: work.count, flushes: flushes, lazy: lazy, failed: unavailable == work.count,
                          duration: ContinuousClock.now - started)
        if unavailable == work.count, let first = results.first, case .failed(let message) = first.result {
            // Nothing got through: the database is down or unreachable. The round is held whole
            // (and `/readyz` says so) until it can be written; every piece is safe to run again.
            throw PostgresParticipantError(.unavailable, message)
        }
        // Between the flush and the answers: a crash here leaves durable records nobody was told of.
        if Failpoints.isEnabled {
            for (piece, outcome) in zip(work, results) {
                switch (piece, outcome.result) {
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
        }
        return results.map(\.result)
    }

    /// Writes the rows of the round's two-phase stages (`prepared`, with coordinator and payload)
    /// in one statement, lazily (each `PREPARE TRANSACTION`'s flush takes them to disk), and notes in
    /// each plan whether its row is written or its transaction ended here already. If the statement
    /// fails, each stage writes its own row.
    private func writeInDoubtRows(_ plans: inout [Plan]) {
        var batch: [Int] = []
        var seen: Set<TxID> = []
        for (index, plan) in plans.enumerated() {
            guard case .stage(let request, false, _, .unwritten) = plan, !request.onePhase, seen.insert(request.txid).inserted else { continue }
            batch.append(index)
        }
        guard batch.count > 1 else { return }
        let requests = batch.map { index -> PrepareRequest in
            guard case .stage(let request, _, _, _) = plans[index] else { preconditionFailure("not a stage") }
            return request
        }
        let txids = requests.map(\.txid.rawValue)
        let coordinators = requests.map(\.coordinator.rawValue)
        let payloads = requests.map { Data($0.payload.bytes).base64EncodedString() }
        let written = workers.run { connection -> Result<[TxID: Plan.Row], PostgresParticipantError> in
            Result { () throws(PostgresParticipantError) in
                var fresh: Set<String> = []
                for row in try connection.run("""
                    INSERT INTO arbiter_participant_transaction AS t (txid, state, coordinator, payload, prepared_at)
                    SELECT u.txid, 'prepared', u.coordinator, decode(u.payload, 'base64'), now()
                    FROM unnest(\(txids)::text[], \(coordinators)::text[], \(payloads)::text[]) AS u(txid, coordinator, payload)
                    ON CONFLICT (txid) DO UPDATE SET coordinator = EXCLUDED.coordinator, payload = EXCLUDED.payload, prepared_at = EXCLUDED.prepared_at
                    WHERE t.state = 'prepared'
                    RETURNING t.txid
                    """).rows {
                    fresh.insert(try row.decode(String.self, column: 0))
                }
                let ended = requests.map(\.txid).filter { !fresh.contains($0.rawValue) }
                let recorded = ended.isEmpty ? [:] : try Rows.transactions(ended, on: connection)
                var result: [TxID: Plan.Row] = [:]
                for request in requests {
                    if fresh.contains(request.txid.rawValue) {
                        result[request.txid] = .written
                    } else if let transaction = recorded[request.txid] {
                        result[request.txid] = .ended(transaction.records)
                    }
                }
                return result
            }
        }
        guard case .success(let rows) = written else { return }
        for index in batch {
            guard case .stage(let request, let uncertain, let hasRoom, _) = plans[index], let row = rows[request.txid] else { continue }
            plans[index] = .stage(request, uncertain: uncertain, hasRoom: hasRoom, row: row)
        }
    }

    func lookup(_ txids: [TxID]) throws -> [[ParticipantRecord]] {
        guard !txids.isEmpty else { return [] }
        let found = try workers.run { connection -> Result<[TxID: ParticipantTransaction], PostgresParticipantError> in
            Result { () throws(PostgresParticipantError) in try Rows.transactions(txids, on: connection) }
        }.get()
        let prepared = preparedHere
        return txids.map { txid in
            guard let transaction = found[txid] else { return [] }
            // A row still `prepared` that PostgreSQL holds no prepared transaction of was never
            // prepared (its stage is being retried, or recovery marks it aborted): nothing yet.
            if transaction.state == .prepared && !prepared.contains(txid) { return [] }
            return transaction.records
        }
    }

    func recover() throws -> [ParticipantRecord] {
        let prefix = self.prefix
        let recovered = try workers.run { connection -> Result<Recovered, PostgresParticipantError> in
            Result { () throws(PostgresParticipantError) in try Rows.recover(prefix: prefix, on: connection) }
        }.get()
        if recovered.orphanCount > 0 {
            logger.notice("marked stages that never reached PREPARE TRANSACTION as aborted", metadata: ["count": "\(recovered.orphanCount)"])
        }
        for gid in recovered.unknownGIDs {
            logger.error("""
                PostgreSQL holds a prepared transaction with this node's prefix and no record of it; it is left as it is \
                (resolve it by hand: COMMIT PREPARED or ROLLBACK PREPARED, as its coordinator decided)
                """, metadata: ["gid": "\(gid)"])
        }
        preparedHere = Set(recovered.transactions.map(\.txid))
        return recovered.transactions.map { ParticipantRecord.prepared($0.txid, coordinator: $0.coordinator!, payload: $0.payload ?? Payload([])) }
    }

    func forgetEnded() throws -> Bool {
        let retention = self.retention
        let page = Self.sweepPage
        let deleted = try workers.run { connection -> Result<Int, PostgresParticipantError> in
            Result { () throws(PostgresParticipantError) in
                let milliseconds = Int64(retention.components.seconds) * 1000 + retention.components.attoseconds / 1_000_000_000_000_000
                return try connection.run("""
                    DELETE FROM arbiter_participant_transaction WHERE txid IN (
                        SELECT txid FROM arbiter_participant_transaction
                        WHERE state <> 'prepared' AND ended_at < now() - \(milliseconds) * interval '1 millisecond'
                        ORDER BY ended_at LIMIT \(page))
                    """).count
            }
        }.get()
        return deleted == page
    }
}

// MARK: - One piece, on a worker

/// What a piece does, with what it needs to know of the loop's memory.
enum Plan: Sendable {
    /// A two-phase stage's row: not yet written, written by the round's one statement, or found
    /// ended (the transaction ended here already: nothing is staged).
    enum Row: Sendable {
        case unwritten
        case written
        case ended([ParticipantRecord])
    }

    case stage(PrepareRequest, uncertain: Bool, hasRoom: Bool, row: Row)
    case records([ParticipantRecord], forced: Bool, prepared: Bool)

    var txid: TxID {
        switch self {
        case .stage(let request, _, _, _): request.txid
        case .records(let records, _, _): records[0].txid
        }
    }
}

/// How a piece ended, and what the loop's memory learns from it.
struct PieceOutcome: Sendable {
    var result: ParticipantWorkResult
    /// `true`: PostgreSQL now holds the transaction prepared; `false`: no longer.
    var prepared: Bool?
    /// `PREPARE TRANSACTION` was sent and not answered.
    var uncertain = false
    /// Failed because the database could not be reached.
    var unavailable = false
    /// Committed now: its row's `ended_at` is to be set to the commit's time.
    var committedAt = false
    /// WAL flushes the piece waited for, and commits that did not wait.
    var flushes = 0
    var lazyCommits = 0

    static func failed(_ error: PostgresParticipantError, uncertain: Bool = false) -> PieceOutcome {
        PieceOutcome(result: .failed(error.description), uncertain: uncertain, unavailable: error.code == .unavailable)
    }
}

/// The outcomes of a round's pieces, filled by the workers.
final class Outcomes: Sendable {
    private let slots: Mutex<[PieceOutcome?]>
    init(count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }
    func set(_ index: Int, _ outcome: PieceOutcome) { slots.withLock { $0[index] = outcome } }
    func all() -> [PieceOutcome] {
        slots.withLock { $0.map { $0 ?? PieceOutcome(result: .failed("the piece did not run")) } }
    }
}

/// Runs pieces on a worker's connection.
struct PieceContext<R: PostgresResource>: Sendable {
    let resource: R
    let prefix: String
    let preparedCountMax: Int

    func gid(_ txid: TxID) -> String { "\(prefix):\(txid.rawValue)" }

    func run(_ plan: Plan, on connection: BlockingConnection) -> PieceOutcome {
        switch plan {
        case .stage(let request, let uncertain, let hasRoom, let row):
            if request.onePhase { return stageOnePhase(request, on: connection) }
            return stageTwoPhase(request, uncertain: uncertain, hasRoom: hasRoom, row: row, on: connection)
        case .records(let records, let forced, let prepared):
            return write(records, forced: forced, prepared: prepared, on: connection)
        }
    }

    // MARK: Stages

    private func stageTwoPhase(_ request: PrepareRequest, uncertain: Bool, hasRoom: Bool, row: Plan.Row,
                               on connection: BlockingConnection) -> PieceOutcome {
        let txid = request.txid
        let gid = gid(txid)
        var sentPrepare = false
        do {
            if uncertain, try Rows.isPrepared(gid: gid, on: connection) {
                return PieceOutcome(result: .staged(.yes), prepared: true)
            }
            if case .ended(let records) = row { return PieceOutcome(result: .alreadyRecorded(records)) }
            guard hasRoom else {
                if case .unwritten = row, !(try connection.run(inDoubtRow(request)).count == 1) {
                    return PieceOutcome(result: .alreadyRecorded(try Rows.transactions([txid], on: connection)[txid]?.records ?? []))
                }
                return try refuse(txid, "\(preparedCountMax) transactions are prepared here already (the participant's limit); retry when fewer are",
                                  on: connection)
            }
            // The row, BEGIN, the stage's statements, the marker and PREPARE TRANSACTION go to the
            // server in as few writes as the stage allows: one when nothing needs reading first.
            let session = StageSession(connection: connection)
            var rowWritten: Result<Bool, PostgresParticipantError> = .success(true)
            if case .unwritten = row {
                session.queue(inDoubtRow(request)) { answer in rowWritten = answer.map { $0.count == 1 } }
            }
            session.queue("BEGIN")
            var vote = try stageInTransaction(request, session: session)
            var prepared: Result<WireConnection.Answer, PostgresParticipantError>?
            if case .yes = vote {
                if session.hasPendingCheck { try session.flush() }
                if session.refusal == nil, case .success(true) = rowWritten {
                    try Failpoints.hitSync("participant.before-prepare-force")
                    // The marker fails unless the row is still `prepared` (the transaction may have
                    // ended here while this stage was queued), and PREPARE TRANSACTION of a failed
                    // transaction rolls it back.
                    session.queue(marker(txid))
                    session.queue(PostgresStatement(unsafeSQL: "PREPARE TRANSACTION '\(gid)'")) { prepared = $0 }
                    sentPrepare = true
                    try session.flush()
                    sentPrepare = false
                } else {
                    try session.flush()
                }
            } else {
                try session.flush()
            }
            if case .success(let answer) = prepared, answer.command == "PREPARE TRANSACTION" {
                return PieceOutcome(result: .staged(.yes), prepared: true, flushes: 1)
            }
            // Not prepared: whatever the connection's transaction is, it is rolled back below.
            switch rowWritten {
            case .failure(let error):
                connection.rollbackQuietly()
                return .failed(error)
            case .success(false):
                connection.rollbackQuietly()
                return PieceOutcome(result: .alreadyRecorded(try Rows.transactions([txid], on: connection)[txid]?.records ?? []))
            case .success(true):
                break
            }
            if case .no(let text)? = session.refusal {
                vote = .no(reason: reason(text))
            } else if case .yes = vote {
                // PostgreSQL refused (a temporary table, max_prepared_transactions reached…) or
                // the transaction had failed: vote no.
                let failure: PostgresParticipantError? = switch prepared {
                case .failure(let error)?: error
                default: session.firstFailure
                }
                vote = .no(reason: reason("PostgreSQL refused to prepare the transaction: \(failure.map(String.init(describing:)) ?? "it answered \(String(describing: try? prepared?.get().tag))")"))
            }
            switch vote {
            case .yes:
                preconditionFailure("a yes vote that was not prepared")
            case .no(let text):
                return try refuse(txid, text, on: connection)
            case .readOnly:
                try connection.runPipelined(["ROLLBACK", "DELETE FROM arbiter_participant_transaction WHERE txid = \(txid.rawValue) AND state = 'prepared'"])
                return PieceOutcome(result: .staged(.readOnly), lazyCommits: 1)
            }
        } catch let error as PostgresParticipantError {
            connection.rollbackQuietly()
            return .failed(error, uncertain: sentPrepare)
        } catch {
            connection.rollbackQuietly()
            return .failed(PostgresParticipantError(.statementFailed, "\(error)"), uncertain: sentPrepare)
        }
    }

    /// The transaction's in-doubt row (`prepared`, with coordinator and payload), unless it ended
    /// here already (then it changes nothing). It commits by itself, lazily: the PREPARE's flush
    /// takes it to disk.
    private func inDoubtRow(_ request: PrepareRequest) -> PostgresStatement {
        """
        INSERT INTO arbiter_participant_transaction AS t (txid, state, coordinator, payload, prepared_at)
        VALUES (\(request.txid.rawValue), 'prepared', \(request.coordinator.rawValue), \(ByteBuffer(bytes: request.payload.bytes)), now())
        ON CONFLICT (txid) DO UPDATE SET coordinator = EXCLUDED.coordinator, payload = EXCLUDED.payload, prepared_at = EXCLUDED.prepared_at
        WHERE t.state = 'prepared'
        """
    }

    /// The marker, inside the transaction to be prepared: the row becomes `committed` (seen once
    /// COMMIT PREPARED made it visible). Fails (SQLSTATE ZA001) when the row is not `prepared`, so
    /// that a transaction that ended here meanwhile is never prepared.
    private func marker(_ txid: TxID) -> PostgresStatement {
        """
        WITH changed AS (
            UPDATE arbiter_participant_transaction SET state = 'committed', ended_at = now()
            WHERE txid = \(txid.rawValue) AND state = 'prepared' RETURNING 1)
        SELECT arbiter_expect_changed(count(*), 1) FROM changed
        """
    }

    /// Runs `COMMIT PREPARED` or `ROLLBACK PREPARED` (`verb`) of `gid`; `false` when PostgreSQL holds
    /// no such prepared transaction (SQLSTATE 42704).
    private func finishPrepared(_ verb: String, _ gid: String, on connection: BlockingConnection) throws(PostgresParticipantError) -> Bool {
        let failure: PostgresParticipantError
        do {
            try connection.run(PostgresStatement(unsafeSQL: "\(verb) PREPARED '\(gid)'"))
            return true
        } catch {
            failure = error
        }
        if failure.sqlState == "42704" { return false }
        throw failure
    }

    /// Rolls back the connection's transaction, if any, and records a two-phase `no` (lazily: the
    /// coordinator aborts on the vote whatever happens here), in one exchange.
    private func refuse(_ txid: TxID, _ text: String, on connection: BlockingConnection) throws(PostgresParticipantError) -> PieceOutcome {
        try connection.runPipelined(["ROLLBACK", Rows.endQuery(txid, .aborted, heuristic: false)])
        return PieceOutcome(result: .staged(.no(reason: text)), lazyCommits: 1)
    }

    private func stageOnePhase(_ request: PrepareRequest, on connection: BlockingConnection) -> PieceOutcome {
        let txid = request.txid
        do {
            let session = StageSession(connection: connection)
            var recorded: Result<ParticipantTransaction?, PostgresParticipantError> = .success(nil)
            session.queue("""
                SELECT txid, state, coordinator, payload, heuristic, prepared_at, ended_at FROM arbiter_participant_transaction WHERE txid = \(txid.rawValue)
                """) { answer in
                recorded = answer.flatMap { answer in Result { () throws(PostgresParticipantError) in try answer.rows.first.map(Rows.decode) } }
            }
            session.queue("BEGIN")
            var vote = try stageInTransaction(request, session: session)
            try session.flush()
            if let transaction = try recorded.get(), transaction.state != .prepared {
                connection.rollbackQuietly()
                return PieceOutcome(result: .alreadyRecorded(transaction.records))
            }
            if case .no(let text)? = session.refusal { vote = .no(reason: reason(text)) }
            switch vote {
            case .yes:
                do {
                    try Failpoints.hitSync("participant.before-commit-force")
                    try Rows.commitForced([Rows.endQuery(txid, .committed, heuristic: false)], on: connection, begin: false)
                } catch let error as PostgresParticipantError where error.code == .statementFailed {
                    connection.rollbackQuietly()
                    try Rows.endForced(txid, .aborted, heuristic: false, on: connection)
                    return PieceOutcome(result: .staged(.no(reason: reason("committing failed: \(error)"))), flushes: 1)
                }
                return PieceOutcome(result: .staged(.yes), flushes: 1)
            case .readOnly:
                connection.rollbackQuietly()
                try Rows.endForced(txid, .committed, heuristic: false, on: connection)
                return PieceOutcome(result: .staged(.readOnly), flushes: 1)
            case .no:
                connection.rollbackQuietly()
                try Rows.endForced(txid, .aborted, heuristic: false, on: connection)
                return PieceOutcome(result: .staged(vote), flushes: 1)
            }
        } catch let error as PostgresParticipantError {
            connection.rollbackQuietly()
            return .failed(error)
        } catch {
            connection.rollbackQuietly()
            return .failed(PostgresParticipantError(.statementFailed, "\(error)"))
        }
    }

    /// Decodes the payload and runs the resource's stage in the session (whose queued BEGIN opens
    /// the transaction); every refusal and statement error becomes a `no` (the transaction then
    /// stays open for the caller to roll back). Throws only when the connection broke.
    private func stageInTransaction(_ request: PrepareRequest, session: StageSession) throws(PostgresParticipantError) -> Vote {
        let payload: R.Payload
        do {
            payload = try WireJSON.decode(R.Payload.self, from: request.payload.bytes)
        } catch {
            return .no(reason: reason("the payload does not fit this participant: \(error.message)"))
        }
        do {
            let vote = try resource.stage(payload, in: PostgresStageContext(txid: request.txid, session: session))
            if case .no(let text) = vote { return .no(reason: reason(text.isEmpty ? "refused by the resource" : text)) }
            return vote
        } catch let error as PostgresParticipantError where error.code == .unavailable {
            throw error
        } catch let error as PostgresParticipantError {
            return .no(reason: reason(error.stageRefusal))
        } catch {
            return .no(reason: reason("staging failed: \(error)"))
        }
    }

    // MARK: Records

    private func write(_ records: [ParticipantRecord], forced: Bool, prepared: Bool, on connection: BlockingConnection) -> PieceOutcome {
        var outcome = PieceOutcome(result: .written)
        do {
            for record in records {
                switch record {
                case .prepared:
                    preconditionFailure("a prepared record outside a stage")
                case .committed(let txid, let heuristic):
                    try Failpoints.hitSync("participant.before-commit-force")
                    if try finishPrepared("COMMIT", gid(txid), on: connection) {
                        outcome.flushes += 1
                    } else {
                        // PostgreSQL no longer has it: committed by an earlier try whose answer was
                        // lost (the marker says so), or never prepared here.
                        guard try Rows.transactions([txid], on: connection)[txid]?.state == .committed else {
                            throw PostgresParticipantError(.statementFailed, """
                                cannot commit \(txid): PostgreSQL holds no prepared transaction \(gid(txid)) and no commit of it is recorded \
                                (was it rolled back by hand?)
                                """, sqlState: "42704")
                        }
                    }
                    outcome.prepared = false
                    if heuristic {
                        try Rows.endForced(txid, .committed, heuristic: true, on: connection)
                        outcome.flushes += 1
                    } else {
                        // The marker set `ended_at` to the prepare's time; the commit's time is
                        // written with the next round's work, many in one statement.
                        outcome.committedAt = true
                    }
                case .aborted(let txid, let heuristic):
                    if prepared {
                        // `false`: rolled back by an earlier try, or never prepared: nothing to undo.
                        if try finishPrepared("ROLLBACK", gid(txid), on: connection) { outcome.flushes += 1 }
                        outcome.prepared = false
                    }
                    if forced || heuristic {
                        try Rows.endForced(txid, .aborted, heuristic: heuristic, on: connection)
                        outcome.flushes += 1
                    } else {
                        try Rows.end(txid, .aborted, heuristic: heuristic, on: connection)
                        outcome.lazyCommits += 1
                    }
                }
            }
            return outcome
        } catch let error as PostgresParticipantError {
            return .failed(error)
        } catch {
            return .failed(PostgresParticipantError(.statementFailed, "\(error)"))
        }
    }

    /// A reason short enough for a reply and a log line.
    private func reason(_ text: String) -> String {
        let limit = 1000
        guard text.utf8.count > limit else { return text }
        return String(decoding: text.utf8.prefix(limit), as: UTF8.self) + "…"
    }
}

extension ParticipantRecord {
    var isPrepared: Bool { if case .prepared = self { true } else { false } }
    var isCommitted: Bool { if case .committed = self { true } else { false } }
}
