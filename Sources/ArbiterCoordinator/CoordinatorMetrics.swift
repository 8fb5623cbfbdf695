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
        committed = registry.makeCounter(descriptor: Self.name("transactions_total", help: "Transactions finished, by outcome."),
                                         labels: [("outcome", "committed")])
        aborted = registry.makeCounter(descriptor: Self.name("transactions_total", help: "Transactions finished, by outcome."),
                                       labels: [("outcome", "aborted")])
        anomalies = registry.makeCounter(descriptor: Self.name("anomalies_total",
            help: "Protocol anomalies (see the log): heuristic mismatches, refused records."))
        active = registry.makeGauge(descriptor: Self.name("transactions_in_flight",
            help: "Transactions the coordinator is driving (undecided, or in phase 2)."))
        decisionLatency = registry.makeDurationHistogram(
            descriptor: Self.name("decision_seconds", help: "From submit to a durable decision."), buckets: latencyBuckets)
        completionLatency = registry.makeDurationHistogram(
            descriptor: Self.name("completion_seconds", help: "From submit to the end of phase 2."), buckets: latencyBuckets)
        fsyncs = registry.makeGauge(descriptor: Self.name("log_fsyncs", help: "Forced commits of the decision log since start (group commits)."))
        lazyCommits = registry.makeGauge(descriptor: Self.name("log_lazy_commits", help: "Decision log commits without fsync since start."))
        logWrites = registry.makeGauge(descriptor: Self.name("log_write_requests", help: "Write requests to the decision log since start."))
        batchSizeLargest = registry.makeGauge(descriptor: Self.name("log_batch_size_max", help: "Largest number of requests committed together."))
        batchSizeMean = registry.makeGauge(descriptor: Self.name("log_batch_size_mean", help: "Mean number of requests committed together."))
    }

    /// The metric `arbiter_NAME`.
    private static func name(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "arbiter", subsystem: nil, metricName: name, unitName: "", helpText: help)
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
