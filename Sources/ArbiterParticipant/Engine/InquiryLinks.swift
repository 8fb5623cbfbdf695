import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import Foundation
import Logging
import Synchronization

/// The participant loop's ``ParticipantTransport``: asks coordinators over HTTP
/// (`GET /v1/transactions/{id}/outcome`) what became of transactions in doubt, at most
/// `concurrencyMax` at once and one per transaction, and posts each answer back to the loop. A
/// failed inquiry is dropped: the machine's timer asks again after its backoff — of the next of
/// the participant's coordinators, starting from the one named in the prepare, so that a
/// transaction whose coordinator died is answered by another coordinator of its cluster (they
/// share one store). What each inquiry brought is kept in ``InquiryRecords`` for operators.
final class InquiryLinks: ParticipantTransport, Sendable {
    private let client: ProtocolClient
    private let records: InquiryRecords
    private let timeout: Duration
    private let concurrencyMax: Int
    /// Every coordinator this participant works for, in the order configured.
    private let coordinators: [CoordinatorID]
    private let logger: Logger
    private let traceparent: @Sendable (TxID) -> String?
    private let post: @Sendable (ParticipantLoop.Input) -> Void
    private let state = Mutex(State())

    private struct State {
        var running = 0
        var queue: [(TxID, CoordinatorID)] = []
        var asking: Set<TxID> = []
        /// Failed inquiries per transaction still in doubt: the next one asks the next coordinator.
        var failures: [TxID: Int] = [:]
    }

    /// Inquiries waiting for a free slot; beyond it they are dropped (asked again after the backoff).
    private static var queueLengthMax: Int { 65_536 }

    init(client: ProtocolClient, records: InquiryRecords, timeout: Duration, concurrencyMax: Int, coordinators: [CoordinatorID] = [], logger: Logger,
         traceparent: @escaping @Sendable (TxID) -> String?, post: @escaping @Sendable (ParticipantLoop.Input) -> Void) {
        self.client = client
        self.records = records
        self.timeout = timeout
        self.concurrencyMax = concurrencyMax
        self.coordinators = coordinators
        self.logger = logger
        self.traceparent = traceparent
        self.post = post
    }

    func inquire(_ txids: [TxID], of coordinator: CoordinatorID) {
        let starting = state.withLock { state -> [(TxID, CoordinatorID)] in
            var starting: [(TxID, CoordinatorID)] = []
            for txid in txids where state.asking.insert(txid).inserted {
                if state.running < concurrencyMax {
                    state.running += 1
                    starting.append((txid, coordinator))
                } else if state.queue.count < Self.queueLengthMax {
                    state.queue.append((txid, coordinator))
                } else {
                    state.asking.remove(txid)
                }
            }
            return starting
        }
        for (txid, coordinator) in starting { ask(txid, coordinator) }
    }

    /// Whom to ask about `txid` after `failures` failed inquiries: the coordinator named in its
    /// prepare, then each other one in turn.
    func target(named: CoordinatorID, failures: Int) -> CoordinatorID {
        let candidates = [named] + coordinators.filter { $0 != named }
        return candidates[failures % candidates.count]
    }

    private func ask(_ txid: TxID, _ named: CoordinatorID) {
        let coordinator = target(named: named, failures: state.withLock { $0.failures[txid] ?? 0 })
        Task {
            do {
                let answer = try await client.inquire(txid, coordinator: coordinator, timeout: timeout, traceparent: traceparent(txid))
                logger.debug("inquiry answered", metadata: ["txid": "\(txid)", "answer": "\(answer)"])
                records.record(txid, InquiryRecord(at: Date(), coordinator: coordinator, result: .answered(answer)))
                // Between the coordinator's answer and its effect here: a crash loses the answer
                // (the next inquiry asks again); a delay is a slow network.
                try? await Failpoints.hit("participant.before-inquiry-answer")
                if answer != .pending { state.withLock { _ = $0.failures.removeValue(forKey: txid) } }
                post(.learned(txid, answer, from: coordinator))
            } catch {
                logger.notice("in-doubt inquiry failed; asking again after the backoff",
                    metadata: ["txid": "\(txid)", "coordinator": "\(coordinator)", "error": "\(error)"])
                let reason = (error as? WireCallError).map { "\($0.kind.rawValue): \($0.message)" } ?? "\(error)"
                records.record(txid, InquiryRecord(at: Date(), coordinator: coordinator, result: .failed(reason)))
                state.withLock { state in
                    if state.failures.count >= Self.queueLengthMax { state.failures.removeAll() }
                    state.failures[txid, default: 0] += 1
                }
            }
            let next = state.withLock { state -> (TxID, CoordinatorID)? in
                state.asking.remove(txid)
                guard !state.queue.isEmpty else {
                    state.running -= 1
                    return nil
                }
                return state.queue.removeFirst()
            }
            if let (txid, coordinator) = next { ask(txid, coordinator) }
        }
    }
}

/// What the last inquiry about a transaction brought: the coordinator's answer, or why there was
/// none.
struct InquiryRecord: Sendable, Hashable {
    enum Result: Sendable, Hashable {
        /// The coordinator answered (`pending`: it has not decided yet).
        case answered(InquiryAnswer)
        /// The inquiry failed: the coordinator was unreachable, slow, or answered with an error.
        case failed(String)
    }

    /// When the answer (or the failure) came.
    var at: Date
    /// Who was asked.
    var coordinator: CoordinatorID
    var result: Result
}

/// The last inquiry about each transaction still in doubt, for an operator about to decide one by
/// hand (the participant's dashboard shows it). In memory only: a restart forgets it, and the
/// recovery's first inquiries fill it again. A record goes when the decision arrives (an inquiry's
/// answer, the coordinator's commit or abort, an operator's decision); the table is emptied
/// whenever it reaches ``countMax``.
final class InquiryRecords: Sendable {
    private let records = Mutex<[TxID: InquiryRecord]>([:])
    static var countMax: Int { 65_536 }

    func record(_ txid: TxID, _ record: InquiryRecord) {
        records.withLock { records in
            if case .answered(let answer) = record.result, answer != .pending {
                // The loop decides it now; nothing is left to decide by hand.
                records[txid] = nil
                return
            }
            if records.count >= Self.countMax, records[txid] == nil { records.removeAll() }
            records[txid] = record
        }
    }

    /// Forgets `txid`'s record (an operator decided it).
    func forget(_ txid: TxID) {
        _ = records.withLock { $0.removeValue(forKey: txid) }
    }

    /// Forgets the records of the transactions that `messages` decide.
    func forgetDecided(_ messages: [CoordinatorMessage]) {
        records.withLock { records in
            guard !records.isEmpty else { return }
            for message in messages {
                switch message {
                case .commit(let txid), .abort(let txid), .outcome(let txid, .committed), .outcome(let txid, .aborted):
                    records[txid] = nil
                case .prepare, .outcome(_, .pending):
                    break
                }
            }
        }
    }

    /// The last inquiry about `txid`, if one ended since the node started and it is still in doubt.
    func last(_ txid: TxID) -> InquiryRecord? {
        records.withLock { $0[txid] }
    }
}
