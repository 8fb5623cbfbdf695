import ArbiterStorage
import Foundation
import Prometheus

/// A participant's Prometheus metrics (`GET /metrics`, no token), read when scraped: the storage
/// writer's counters (fsyncs, lazy commits, pieces of work, transaction sizes: the rounds batching
/// at work), the transactions recorded by state, the locks held, and the loop's load.
///
/// Divide `arbiter_participant_fsyncs` by the transactions a node took part in to get its fsyncs
/// per transaction; under load the rounds bring it well below the two (prepare, commit) that a
/// transaction forces on its own.
final class ParticipantMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let fsyncs: Gauge
    private let lazyCommits: Gauge
    private let writeRequests: Gauge
    private let failedWriteRequests: Gauge
    private let batchSizeLargest: Gauge
    private let batchSizeMean: Gauge
    private let batchSeconds: Gauge
    private let transactions: [ParticipantTransactionState: Gauge]
    private let locks: Gauge
    private let waitingRequests: Gauge
    private let queuedStorageOps: Gauge
    private let knownTransactions: Gauge
    private let inDoubt: Gauge
    private let oldestInDoubt: Gauge

    init() {
        fsyncs = Self.gauge(registry, "fsyncs",
            help: "Forced commits of the participant's database since start (one per round that had to be durable; one fsync each).")
        lazyCommits = Self.gauge(registry, "lazy_commits",
            help: "Commits of the participant's database without fsync since start.")
        writeRequests = Self.gauge(registry, "write_requests",
            help: "Pieces of work written since start (a round's stages and records, or one write of the service's own).")
        failedWriteRequests = Self.gauge(registry, "failed_write_requests",
            help: "Transactions of the participant's database that failed since start (nothing of them applied).")
        batchSizeLargest = Self.gauge(registry, "batch_size_max",
            help: "Largest number of pieces of work committed in one transaction (a round).")
        batchSizeMean = Self.gauge(registry, "batch_size_mean",
            help: "Mean number of pieces of work committed in one transaction.")
        batchSeconds = Self.gauge(registry, "batch_seconds_total",
            help: "Time spent running and committing transactions, fsyncs included, since start.")
        var transactions: [ParticipantTransactionState: Gauge] = [:]
        for state in ParticipantTransactionState.allCases {
            transactions[state] = Self.gauge(registry, "transactions", labels: [("state", state.rawValue)],
                help: "Transactions recorded, by state (ended ones until retention forgets them).")
        }
        self.transactions = transactions
        locks = Self.gauge(registry, "locks", help: "Key locks held by prepared transactions.")
        waitingRequests = Self.gauge(registry, "waiting_requests",
            help: "Protocol requests waiting for their answer (a durable vote or acknowledgement).")
        queuedStorageOps = Self.gauge(registry, "queued_storage_ops",
            help: "Pieces of protocol work that failed alone and wait for a retry in a later round.")
        knownTransactions = Self.gauge(registry, "known_transactions",
            help: "Transactions the state machine remembers (in progress, or ended within its memory retention).")
        inDoubt = Self.gauge(registry, "in_doubt",
            help: "Transactions prepared here and waiting for the coordinator's decision.")
        oldestInDoubt = Self.gauge(registry, "oldest_in_doubt_seconds",
            help: "How long the oldest in-doubt transaction has waited for its decision; 0 when none.")
    }

    /// A gauge named `arbiter_participant_NAME`.
    private static func gauge(
        _ registry: PrometheusCollectorRegistry, _ name: String, labels: [(String, String)] = [], help: String
    ) -> Gauge {
        let descriptor = MetricNameDescriptor(namespace: "arbiter", subsystem: "participant", metricName: name, unitName: "", helpText: help)
        return registry.makeGauge(descriptor: descriptor, labels: labels)
    }

    /// The Prometheus text, with every value read now.
    func exposition(storage statistics: StoreWriterStatistics, census: ParticipantCensus, load: EngineLoad) -> String {
        fsyncs.set(Int64(statistics.forcedTransactionCount))
        lazyCommits.set(Int64(statistics.lazyTransactionCount))
        writeRequests.set(Int64(statistics.pieceCount))
        failedWriteRequests.set(Int64(statistics.failedTransactionCount))
        batchSizeLargest.set(Int64(statistics.transactionSizeLargest))
        batchSizeMean.set(statistics.transactionSizeMean)
        batchSeconds.set(Double(statistics.transactionDurationTotal.components.seconds)
            + Double(statistics.transactionDurationTotal.components.attoseconds) / 1e18)
        transactions[.prepared]?.set(Int64(census.prepared))
        inDoubt.set(Int64(census.prepared))
        oldestInDoubt.set(census.oldestPreparedAt.map { max(0, Date().timeIntervalSince($0)) } ?? 0)
        transactions[.committed]?.set(Int64(census.committed))
        transactions[.aborted]?.set(Int64(census.aborted))
        locks.set(Int64(census.locks))
        waitingRequests.set(Int64(load.waitingRequests))
        queuedStorageOps.set(Int64(load.queuedStorageOps))
        knownTransactions.set(Int64(load.knownTransactions))
        return registry.emitToString()
    }
}
