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

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        router.get(RouterPath(WireEndpoint.coordinatorHealth.routerPath)) { _, _ in HealthResponse() }
        router.get(RouterPath(WireEndpoint.coordinatorReady.routerPath)) { _, _ -> ReadyResponse in
            try checkStorage()
            return ReadyResponse()
        }
        router.get(RouterPath(WireEndpoint.metrics.routerPath)) { _, _ in
            WireResponse.prometheus(metrics.exposition(log: engine.log.writer.statistics))
        }
        // Operator listing: operators only; without operator tokens, the listing is off.
        if keyring.hasTokens(for: .operator) {
            router.group()
                .add(middleware: RoleMiddleware(keyring, allowing: [.operator], realm: "arbiter-operator"))
                .get(RouterPath(WireEndpoint.list.routerPath)) { request, _ in try await list(request) }
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
                return OutcomeResponse(id: txid, answer: try await storage { try await engine.inquiryAnswer(for: txid) })
            }
        return router
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
            try await storage {
                try await engine.submit(
                    txid, branches: submission.branches, timeout: submission.timeout,
                    wait: submission.wait == .completion ? .completion : .decision,
                    waitMax: deadline + options.clientWaitGrace, trace: trace)
            }
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
        guard let summary = try await storage({ try await engine.log.transaction(txid) }) else {
            throw APIError.notFound("no transaction \(txid) in this coordinator's log", field: "id")
        }
        return try view(summary, live: engine.phase(of: txid))
    }

    private func list(_ request: Request) async throws -> TransactionPage {
        let query = try request.listQuery(limits: options.limits)
        let cursor = try query.after.map { after throws(APIError) in
            guard let cursor = TransactionCursor(after.rawValue) else {
                throw APIError.invalidValue("after", "not a cursor from a previous page's `next`")
            }
            return cursor
        }
        let summaries = try await storage {
            try await engine.log.list(state: query.state.map(Self.storageState), limit: query.limit, after: cursor)
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
    private func storage<T>(_ work: () async throws -> T) async throws(APIError) -> T {
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
