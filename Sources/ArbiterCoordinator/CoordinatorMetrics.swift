import ArbiterCore
import ArbiterStorage
import Prometheus

/// The coordinator's Prometheus metrics (`GET /metrics`).
final class CoordinatorMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let committed: Counter
    private let aborted: Counter
    let anomalies: Counter
    let active: Gauge
    let decisionLatency: DurationHistogram
    let completionLatency: DurationHistogram
    private let fsyncs: Gauge
    private let lazyCommits: Gauge
    private let logWrites: Gauge
    private let batchSizeLargest: Gauge
    private let batchSizeMean: Gauge

    init() {
        let latencyBuckets: [Duration] = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
        ]
        committed = registry.makeCounter(name: "arbiter_transactions_total", labels: [("outcome", "committed")],
                                         help: "Transactions finished, by outcome.")
        aborted = registry.makeCounter(name: "arbiter_transactions_total", labels: [("outcome", "aborted")],
                                       help: "Transactions finished, by outcome.")
        anomalies = registry.makeCounter(name: "arbiter_anomalies_total",
                                         help: "Protocol anomalies (see the log): heuristic mismatches, refused records.")
        active = registry.makeGauge(name: "arbiter_transactions_in_flight",
                                    help: "Transactions the coordinator is driving (undecided, or in phase 2).")
        decisionLatency = registry.makeDurationHistogram(name: "arbiter_decision_seconds", buckets: latencyBuckets,
                                                         help: "From submit to a durable decision.")
        completionLatency = registry.makeDurationHistogram(name: "arbiter_completion_seconds", buckets: latencyBuckets,
                                                           help: "From submit to the end of phase 2.")
        fsyncs = registry.makeGauge(name: "arbiter_log_fsyncs", help: "Forced commits of the decision log since start (group commits).")
        lazyCommits = registry.makeGauge(name: "arbiter_log_lazy_commits", help: "Decision log commits without fsync since start.")
        logWrites = registry.makeGauge(name: "arbiter_log_write_requests", help: "Write requests to the decision log since start.")
        batchSizeLargest = registry.makeGauge(name: "arbiter_log_batch_size_max", help: "Largest number of requests committed together.")
        batchSizeMean = registry.makeGauge(name: "arbiter_log_batch_size_mean", help: "Mean number of requests committed together.")
    }

    func transactions(_ outcome: Outcome) -> Counter { outcome == .committed ? committed : aborted }

    /// The Prometheus text, with the log's counters read now.
    func exposition(log statistics: GroupCommitStatistics) -> String {
        fsyncs.set(Int64(statistics.forcedBatchCount))
        lazyCommits.set(Int64(statistics.lazyBatchCount))
        logWrites.set(Int64(statistics.requestCount))
        batchSizeLargest.set(Int64(statistics.batchSizeLargest))
        batchSizeMean.set(statistics.batchSizeMean)
        return registry.emitToString()
    }
}
