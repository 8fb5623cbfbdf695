import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import BankCluster
import Foundation
import Synchronization

/// Concurrent clients sending transfers between bank nodes, each retried with the same id until
/// the coordinator answers, recording every transaction issued and the outcome its client was
/// finally told.
///
/// A transfer debits an account at one node and credits an account at another. A share of the
/// transactions (``Settings/singleBranchShare``) are instead a deposit or a withdrawal at one
/// node: one branch, so the coordinator runs them in one phase; the money they move in or out is
/// counted when their client is told they committed (``netDeposits``). Workers take new
/// transfers until ``stop()``; a transfer already issued is retried (same id: an idempotency key)
/// until it is answered or ``Settings/answerTimeout`` passes, so a crash never makes a client give
/// up on a transaction it may have started.
final class Workload: Sendable {
    struct Settings: Sendable {
        /// The nodes transfers run between (two distinct ones per transfer).
        var nodes: [Int]
        var accountsPerNode: Int
        /// The largest amount of one transfer, in cents.
        var amountMax = 1_000
        var workers = 8
        /// How long one transfer is retried before it counts as unanswered.
        var answerTimeout: Duration = .seconds(180)
        /// How long the coordinator may collect votes (`nil`: its default).
        var transactionTimeout: Duration?
        /// The share of single-branch (one-phase) deposits and withdrawals, 0...1.
        var singleBranchShare = 0.2
    }

    struct Counts: Sendable, CustomStringConvertible {
        var issued = 0
        /// Of which single-branch (one-phase).
        var singleBranch = 0
        var committed = 0
        var aborted = 0
        var unanswered = 0
        /// Answers a retry cannot change (a 4xx other than a timeout): each is a violation.
        var rejected = 0
        var answered: Int { committed + aborted }
        var description: String {
            "\(issued) issued (\(singleBranch) single-branch), \(committed) committed, \(aborted) aborted, \(unanswered) unanswered, \(rejected) rejected"
        }
    }

    private struct State {
        var stopped = false
        var transactions: [IssuedTransaction] = []
        var counts = Counts()
        var rejections: [String] = []
        var abortReasons: [String: Int] = [:]
        /// Money deposited minus money withdrawn by single-branch transactions told committed.
        var netDeposits = 0
    }

    let cluster: BankCluster
    /// Makes each worker's client.
    let client: @Sendable () -> ArbiterClient
    let settings: Settings
    let prefix: String
    let seed: UInt64
    private let state = Mutex(State())

    /// - Parameter prefix: Starts every transaction id; unique per scenario.
    init(cluster: BankCluster, client: @escaping @Sendable () -> ArbiterClient, settings: Settings, prefix: String, seed: UInt64) {
        precondition(settings.nodes.count >= 2, "a transfer needs two nodes")
        self.cluster = cluster
        self.client = client
        self.settings = settings
        self.prefix = prefix
        self.seed = seed
    }

    static func accountID(_ node: Int, _ index: Int) -> String { "n\(node)-a\(index)" }

    /// Every transaction issued so far, with what its client was told.
    var transactions: [IssuedTransaction] { state.withLock { $0.transactions } }
    var counts: Counts { state.withLock { $0.counts } }
    var rejections: [String] { state.withLock { $0.rejections } }
    /// Money deposited minus money withdrawn by the single-branch transactions told committed: the
    /// sum of all balances must have moved by exactly this.
    var netDeposits: Int { state.withLock { $0.netDeposits } }
    /// Why transactions aborted, by the first words of the reason, for the log.
    var abortReasons: [String: Int] { state.withLock { $0.abortReasons } }

    /// Stops taking new transfers; those in flight go on until answered.
    func stop() { state.withLock { $0.stopped = true } }

    /// Runs the workers until ``stop()`` (or cancellation) and every transfer they issued is
    /// answered or has timed out.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<settings.workers {
                group.addTask { await self.work(worker) }
            }
        }
    }

    private func work(_ worker: Int) async {
        var random = SplitMix64(seed: seed &+ UInt64(worker) &* 0x9E37_79B9_7F4A_7C15)
        let client = client()
        var number = 0
        while !Task.isCancelled {
            number += 1
            let (branches, nodes, delta) = transfer(&random)
            let txid = try! TxID("\(prefix)-w\(worker)-\(number)")
            let issued = state.withLock { state -> Bool in
                guard !state.stopped else { return false }
                state.transactions.append(IssuedTransaction(txid: txid, nodes: nodes, told: nil))
                state.counts.issued += 1
                if nodes.count == 1 { state.counts.singleBranch += 1 }
                return true
            }
            guard issued else { return }
            let told = await submitUntilAnswered(client, branches, txid, random: &random)
            state.withLock { state in
                if let index = state.transactions.lastIndex(where: { $0.txid == txid }) { state.transactions[index].told = told?.outcome }
                switch told?.outcome {
                case .committed:
                    state.counts.committed += 1
                    state.netDeposits += delta
                case .aborted:
                    state.counts.aborted += 1
                    state.abortReasons[Self.reasonKind(told?.reason), default: 0] += 1
                case nil: break
                }
            }
        }
    }

    /// Submits until the coordinator answers; retries reuse the id. `nil`: no answer in time, or
    /// an answer a retry cannot change (recorded as a rejection).
    private func submitUntilAnswered(
        _ client: ArbiterClient, _ branches: [Branch], _ txid: TxID, random: inout SplitMix64
    ) async -> SubmitResult? {
        let clock = ContinuousClock()
        let deadline = clock.now + settings.answerTimeout
        var attempt = 0
        let backoff = Backoff(initial: .milliseconds(50), max: .seconds(1))
        while true {
            do {
                return try await client.submit(branches: branches, id: txid, timeout: settings.transactionTimeout)
            } catch {
                let retryable = error.isOutcomeUncertain || error.code == .invalidResponse
                if !retryable {
                    state.withLock { state in
                        state.counts.rejected += 1
                        state.rejections.append("\(txid): \(error)")
                    }
                    return nil
                }
                if clock.now >= deadline || Task.isCancelled {
                    state.withLock { $0.counts.unanswered += 1 }
                    return nil
                }
                // The coordinator or a node may be restarting: ask again, with the same id.
                try? await Task.sleep(for: backoff.delay(attempt: attempt, random: &random))
                attempt += 1
            }
        }
    }

    /// A random transaction: its branches, its nodes, and how much it adds to the sum of all
    /// balances if it commits (0 for a transfer).
    private func transfer(_ random: inout SplitMix64) -> ([Branch], [Int], Int) {
        let nodes = settings.nodes
        let from = nodes[Int.random(in: 0..<nodes.count, using: &random)]
        let amount = Int.random(in: 1...settings.amountMax, using: &random)
        let source = Self.accountID(from, Int.random(in: 0..<settings.accountsPerNode, using: &random))
        if Double.random(in: 0..<1, using: &random) < settings.singleBranchShare {
            let deposit = Bool.random(using: &random)
            return ([cluster.branch(deposit ? .credit : .debit, source, amount, at: from)], [from], deposit ? amount : -amount)
        }
        var to = nodes[Int.random(in: 0..<nodes.count, using: &random)]
        while to == from { to = nodes[Int.random(in: 0..<nodes.count, using: &random)] }
        let destination = Self.accountID(to, Int.random(in: 0..<settings.accountsPerNode, using: &random))
        return ([cluster.branch(.debit, source, amount, at: from), cluster.branch(.credit, destination, amount, at: to)], [from, to], 0)
    }

    /// The kind of an abort's reason: lock conflicts, deadlines, unreachable nodes…
    static func reasonKind(_ reason: String?) -> String {
        guard let reason else { return "no reason" }
        if reason.contains("locked by") { return "lock conflict" }
        if reason.contains("insufficient") { return "insufficient funds" }
        if reason.contains("deadline") || reason.contains("timed out") || reason.contains("timeout") { return "deadline" }
        if reason.contains("recover") || reason.contains("restart") { return "coordinator restart" }
        return String(reason.prefix(60))
    }
}
