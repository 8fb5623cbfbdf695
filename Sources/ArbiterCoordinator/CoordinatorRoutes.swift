import ArbiterCore
import ArbiterHTTP
import ArbiterStorage
import Hummingbird
import Logging
import Synchronization
import Tracing

/// The coordinator half of `schemas/openapi.yaml`, on Hummingbird.
struct CoordinatorRoutes: Sendable {
    let engine: CoordinatorEngine
    let ids: TransactionIDs
    let options: CoordinatorOptions
    let metrics: CoordinatorMetrics
    let keyring: Keyring
    /// The dashboard's browser sessions.
    let sessions: DashboardSessions

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: MethodNotAllowedMiddleware(endpoints: WireEndpoint.coordinatorEndpoints))
        router.get(RouterPath(WireEndpoint.coordinatorHealth.routerPath)) { _, _ in HealthResponse() }
        router.get(RouterPath(WireEndpoint.coordinatorReady.routerPath)) { _, _ -> ReadyResponse in
            try checkStorage()
            return ReadyResponse()
        }
        router.get(RouterPath(WireEndpoint.metrics.routerPath)) { _, _ in
            WireResponse.prometheus(metrics.exposition(log: engine.log.writer.statistics, snapshot: await metricsSnapshot()))
        }
        // Operator listing: operators only; without operator tokens, the listing is off.
        if keyring.hasTokens(for: .operator) {
            let operatorRoutes = router.group()
                .add(middleware: OperatorMiddleware(keyring: keyring, sessions: sessions))
            operatorRoutes.get(RouterPath(WireEndpoint.list.routerPath)) { request, _ in try await list(request) }
            operatorRoutes.get(RouterPath(WireEndpoint.operatorStuck.routerPath)) { request, _ in try await stuck(request) }
            operatorRoutes.get(RouterPath(WireEndpoint.operatorAudit.routerPath)) { request, _ in try await auditTrail(request) }
            operatorRoutes.post(RouterPath(WireEndpoint.operatorRetry.routerPath)) { request, context in
                try await retry(request, context)
            }
            dashboardRoutes(router, operatorRoutes)
        } else {
            router.get(RouterPath(WireEndpoint.list.routerPath)) { _, _ -> Response in
                throw APIError.forbidden("the transaction listing is off: start the coordinator with --operator-secret-file")
            }
        }
        // One transaction: clients and operators.
        router.group()
            .add(middleware: RoleMiddleware(keyring, allowing: [.client, .operator]))
            .get(RouterPath(WireEndpoint.transaction.routerPath)) { request, context in try await show(request, context) }
        // Submitting: clients only.
        let clientRoutes = router.group().add(middleware: RoleMiddleware(keyring, allowing: [.client]))
        clientRoutes.post(RouterPath(WireEndpoint.submit.routerPath)) { request, _ in try await submit(request) }
        clientRoutes.post(RouterPath(WireEndpoint.submitBatch.routerPath)) { request, _ in try await submitBatch(request) }
        // A participant's in-doubt inquiry: participants only. An inquiry about an unknown id
        // records a presumed abort, so a client must not be able to send one for ids it does not own.
        router.group()
            .add(middleware: RoleMiddleware(keyring, allowing: [.participant]))
            .get(RouterPath(WireEndpoint.outcome.routerPath)) { request, context in
                let txid = try request.txid(context: context)
                return OutcomeResponse(id: txid, answer: await engine.inquiryAnswer(for: txid))
            }
        return router
    }

    /// What `/metrics` reads besides counters; the log's ages are left out when it cannot be read.
    func metricsSnapshot() async -> CoordinatorMetrics.Snapshot {
        let ages = try? await engine.views.oldestOpen()
        return CoordinatorMetrics.Snapshot(
            reachability: engine.links.reachability(), owed: await engine.owedAcknowledgements(),
            undecidedSince: ages?.undecidedSince, unacknowledgedSince: ages?.unacknowledgedSince)
    }

    // MARK: - Operator levers

    /// `POST /v1/operator/transactions/{id}/retry`: resends the decision now to every participant
    /// that has not acknowledged it. Audited: the row is forced before the machine acts, its result
    /// after; a refused retry is recorded too.
    private func retry(_ request: Request, _ context: BasicRequestContext) async throws -> RetryResponse {
        let txid = try request.txid(context: context)
        let body = try await request.decodeWire(RetryRequest.self, bodySizeMax: options.limits.bodySizeMax)
        let reason = try WireValidation.operatorReason(body.reason, doing: "force phase 2 now")
        let actor = sessions.actor(of: request, keyring: keyring)
        let audit = try await storage { try await engine.log.beginOperatorAction(actor: actor, action: "retry", txid: txid, reason: reason) }
        let result = await engine.retryPhaseTwoNow(txid)
        switch result {
        case .resent(let participants):
            let names = participants.map(\.rawValue)
            try await storage { try await engine.log.finishOperatorAction(audit, result: "done: resent to \(names.joined(separator: ", "))") }
            options.logger.notice("operator forced a phase-2 retry",
                metadata: ["txid": "\(txid)", "actor": "\(actor)", "reason": "\(reason)", "participants": "\(names)"])
            return RetryResponse(id: txid.rawValue, resentTo: names, auditId: audit)
        case .notOwed(let phase):
            let error: APIError
            if let phase {
                error = APIError(status: .conflict, code: .notInPhaseTwo,
                    message: "transaction \(txid) is \(phase), not decided: nothing to resend yet; wait for its votes or its prepare deadline", field: "id")
            } else if let recorded = try await storage({ try await engine.views.transaction(txid) }) {
                error = APIError(status: .conflict, code: .notInPhaseTwo,
                    message: "transaction \(txid) is \(recorded.state.rawValue): every participant has acknowledged; nothing to resend", field: "id")
            } else {
                error = APIError.notFound("no transaction \(txid) in this coordinator's log", field: "id")
            }
            try await storage { try await engine.log.finishOperatorAction(audit, result: "refused: \(error.message)") }
            throw error
        }
    }

    /// `GET /v1/operator/stuck?olderThanMs=N&limit=N`: open transactions first recorded at least
    /// N ms ago (default 0), oldest first, with the participants that owe them something.
    private func stuck(_ request: Request) async throws -> StuckList {
        let olderThanMs = try request.uri.queryParameters.get("olderThanMs").map { text throws(APIError) -> Int64 in
            guard let value = Int64(text), value >= 0 else {
                throw APIError.invalidValue("olderThanMs", "`olderThanMs`: give a number of milliseconds, 0 or more")
            }
            return value
        } ?? Int64(0)
        let limit = try pageLimit(request)
        return StuckList(transactions: try await stuckTransactions(olderThanMs: olderThanMs, limit: limit))
    }

    func stuckTransactions(olderThanMs: Int64, limit: Int) async throws(APIError) -> [StuckTransaction] {
        let now = Date()
        let cutoff = now.addingTimeInterval(-Double(olderThanMs) / 1000)
        let summaries = try await storage { try await engine.views.open(createdBefore: cutoff, limit: limit) }
        return summaries.map { summary in
            let acknowledged = Set(summary.acknowledgements.map(\.participant))
            let undecided = summary.state == .active
            let owing: [ParticipantID] = undecided
                ? (summary.branches ?? []).map(\.participant)
                : (summary.notify ?? []).filter { !acknowledged.contains($0) }
            return StuckTransaction(
                id: summary.txid.rawValue, state: Self.wireState(summary.state),
                createdAt: WireTimestamp.string(millisecondsSinceEpoch: Self.milliseconds(summary.createdAt)),
                decidedAt: summary.decidedAt.map { WireTimestamp.string(millisecondsSinceEpoch: Self.milliseconds($0)) },
                ageMs: max(0, Self.milliseconds(now) - Self.milliseconds(summary.createdAt)),
                awaiting: undecided ? "vote" : "acknowledgement",
                owing: owing.map(\.rawValue))
        }
    }

    /// `GET /v1/operator/audit?limit=N&before=ID`: the operator audit trail, newest first.
    private func auditTrail(_ request: Request) async throws -> OperatorAuditTrail {
        let limit = try pageLimit(request)
        let before = try request.uri.queryParameters.get("before").map { text throws(APIError) in
            guard let before = Int64(text), before > 0 else {
                throw APIError.invalidValue("before", "`before`: give the id of an audit entry from a previous page")
            }
            return before
        }
        return OperatorAuditTrail(entries: try await auditEntries(limit: limit, before: before))
    }

    func auditEntries(limit: Int, before: Int64?) async throws(APIError) -> [OperatorAuditEntry] {
        try await storage { try await engine.log.operatorActions(limit: limit, before: before) }.map { action in
            OperatorAuditEntry(
                id: action.id, at: WireTimestamp.string(millisecondsSinceEpoch: Self.milliseconds(action.at)),
                actor: action.actor, action: action.action, txid: action.txid, reason: action.reason, result: action.result)
        }
    }

    private func pageLimit(_ request: Request) throws(APIError) -> Int {
        try request.uri.queryParameters.get("limit").map { text throws(APIError) in
            guard let limit = Int(text), (1...1000).contains(limit) else {
                throw APIError.invalidValue("limit", "`limit`: give a number in 1...1000")
            }
            return limit
        } ?? 100
    }

    private func submit(_ request: Request) async throws -> Response {
        let body = try await request.decodeWire(SubmitRequest.self, bodySizeMax: options.limits.bodySizeMax)
        let submission = try body.validated(limits: options.limits, participant: options.participants.resolve)
        let trace = WireTracing.context(traceparent: request.headers[TraceParent.header])
        return try WireResponse.json(try await run(submission, as: submission.id ?? ids.next(), trace: trace))
    }

    /// `POST /v1/transaction-batch`: every transaction runs as if submitted alone, concurrently;
    /// the response streams one line per transaction as its answer is known, several lines to a
    /// write when they are ready together. A malformed batch is refused whole, before anything runs.
    private func submitBatch(_ request: Request) async throws -> Response {
        let body = try await request.decodeWire(SubmitBatchRequest.self, bodySizeMax: options.limits.batchBodySizeMax)
        let submissions = try body.validated(limits: options.limits, participant: options.participants.resolve)
        try checkStorage()
        let txids = submissions.map { $0.id ?? ids.next() }
        // One header for the request: every transaction in it joins the sender's trace.
        let trace = WireTracing.context(traceparent: request.headers[TraceParent.header])
        let lines = ResultLines()
        let logger = options.logger
        return Response(status: .ok, headers: [.contentType: WireResponse.ndjsonContentType], body: ResponseBody { writer in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, submission) in submissions.enumerated() {
                    group.addTask {
                        let result: SubmitBatchResult
                        do throws(APIError) {
                            let response = try await run(submission, as: txids[index], trace: trace)
                            result = SubmitBatchResult(index: index, id: response.id, outcome: response.outcome, reason: response.reason)
                        } catch {
                            result = SubmitBatchResult(index: index, id: txids[index], error: error)
                        }
                        do {
                            lines.append(try WireJSON.encode(result))
                        } catch {
                            logger.error("could not encode a batch result", metadata: ["error": "\(error)"])
                            lines.append(try WireJSON.encode(SubmitBatchResult(index: index, id: txids[index], error: .internal())))
                        }
                    }
                }
                var written = 0
                while written < submissions.count {
                    let (bytes, count) = await lines.take()
                    try await writer.write(ByteBuffer(bytes: bytes))
                    written += count
                }
            }
            try await writer.finish(nil)
        })
    }

    /// Refuses at once, with 503 `storage_unavailable`, while the decision log cannot be written:
    /// a new transaction could neither be decided nor aborted durably, and would only hold its
    /// participants' locks until the client gave up.
    private func checkStorage() throws(APIError) {
        if let fault = engine.storageFault {
            throw APIError.storageUnavailable(
                "the decision log cannot be written \(fault); nothing was done. Free space or fix the disk; the coordinator resumes by itself (watch GET /readyz)")
        }
    }

    /// Runs one submission to its answer, as `POST /v1/transactions` reports it, in a `submit` span
    /// when there is a trace (the client's `traceparent`, or a tracer of this process).
    private func run(_ submission: Submission, as txid: TxID, trace: ServiceContext?) async throws(APIError) -> SubmitResponse {
        try checkStorage()
        let deadline = submission.timeout ?? options.protocolConfig.prepareTimeout
        let result = try await WireTracing.withSpan("submit", context: trace, ofKind: .server) { trace async throws(APIError) in
            await engine.submit(
                txid, branches: submission.branches, timeout: submission.timeout,
                wait: submission.wait == .completion ? .completion : .decision,
                waitMax: deadline + options.clientWaitGrace, trace: trace)
        }
        switch result {
        case .outcome(let txid, let outcome, let reason):
            return SubmitResponse(id: txid, outcome: outcome, reason: reason)
        case .rejected(let txid, .idInUse):
            throw APIError.idInUse(txid.rawValue)
        case .rejected(_, let rejection):
            throw APIError.invalidValue("branches", rejection.description)
        case .pending(let txid):
            throw APIError.outcomeUnknown(txid.rawValue)
        }
    }

    private func show(_ request: Request, _ context: BasicRequestContext) async throws -> TransactionView {
        let txid = try request.txid(context: context)
        guard let summary = try await storage({ try await engine.views.transaction(txid) }) else {
            throw APIError.notFound("no transaction \(txid) in this coordinator's log", field: "id")
        }
        return try view(summary, live: await engine.phase(of: txid))
    }

    private func list(_ request: Request) async throws -> TransactionPage {
        let query = try request.listQuery(limits: options.limits)
        let cursor = try query.after.map { after throws(APIError) in
            guard let cursor = TransactionCursor(after) else {
                throw APIError.invalidValue("after", "not a cursor from a previous page's `next`")
            }
            return cursor
        }
        let summaries = try await storage {
            try await engine.views.list(state: query.state.map(Self.storageState), limit: query.limit, after: cursor)
        }
        let views = try summaries.map { try view($0, live: nil) }
        return TransactionPage(transactions: views, next: summaries.count == query.limit ? summaries.last?.cursor.description : nil)
    }

    private func view(_ summary: TransactionSummary, live: CoordinatorPhase?) throws(APIError) -> TransactionView {
        let acknowledged = Set(summary.acknowledgements.map(\.participant))
        let branches = try (summary.branches ?? []).map { branch throws(APIError) in
            BranchView(
                participant: branch.participant.rawValue,
                payload: try RawJSON(branch.payload),
                acknowledgement: acknowledged.contains(branch.participant) && summary.outcome != nil
                    ? WireLocalOutcome(summary.outcome == .committed ? .committed : .aborted) : nil)
        }
        return TransactionView(
            id: summary.txid.rawValue,
            state: Self.wireState(summary.state),
            outcome: summary.outcome.map(WireOutcome.init),
            reason: summary.reason,
            branches: branches,
            createdAt: WireTimestamp.string(millisecondsSinceEpoch: Self.milliseconds(summary.createdAt)),
            decidedAt: summary.decidedAt.map { WireTimestamp.string(millisecondsSinceEpoch: Self.milliseconds($0)) },
            endedAt: summary.endedAt.map { WireTimestamp.string(millisecondsSinceEpoch: Self.milliseconds($0)) })
    }

    /// Runs a storage call, turning its typed error into a 503 the client can retry.
    func storage<T>(_ work: () async throws -> T) async throws(APIError) -> T {
        do {
            return try await work()
        } catch {
            options.logger.error("storage error", metadata: ["error": "\(error)"])
            let code = (error as? StorageError)?.code.rawValue ?? "error"
            throw APIError.unavailable("the decision log is unavailable (\(code)); retry later")
        }
    }

    static func wireState(_ state: ArbiterStorage.TransactionState) -> ArbiterHTTP.TransactionState {
        switch state {
        case .active: .preparing
        case .committing: .committing
        case .aborting: .aborting
        case .committed: .committed
        case .aborted: .aborted
        }
    }

    static func storageState(_ state: ArbiterHTTP.TransactionState) -> ArbiterStorage.TransactionState {
        switch state {
        case .preparing: .active
        case .committing: .committing
        case .aborting: .aborting
        case .committed: .committed
        case .aborted: .aborted
        }
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
}

/// The lines of a transaction batch's response as its transactions finish: appended by each
/// transaction's task, taken by the one writer — everything ready at once in one write.
private final class ResultLines: Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var count = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func append(_ line: [UInt8]) {
        let waiter = state.withLock { state in
            state.bytes.append(contentsOf: line)
            state.bytes.append(UInt8(ascii: "\n"))
            state.count += 1
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Waits for at least one line, then takes every line there is.
    func take() async -> (bytes: [UInt8], count: Int) {
        while true {
            let taken = state.withLock { state -> (bytes: [UInt8], count: Int)? in
                guard state.count > 0 else { return nil }
                defer { state.bytes = []; state.count = 0 }
                return (state.bytes, state.count)
            }
            if let taken { return taken }
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state in
                    if state.count > 0 { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }
}

import Foundation
