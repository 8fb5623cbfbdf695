import ArbiterCore
import ArbiterStorage
import Foundation
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
    /// Phase-2 messages sent again: by the retry timer, or by an operator's retry.
    let phaseTwoRetries: Counter
    private let oldestUndecided: Gauge
    private let oldestUnacknowledged: Gauge

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
        fsyncs = registry.makeGauge(descriptor: Self.name("log_fsyncs", help: "Forced commits of the decision log since start (one per round that had to be durable)."))
        lazyCommits = registry.makeGauge(descriptor: Self.name("log_lazy_commits", help: "Decision log commits without fsync since start."))
        logWrites = registry.makeGauge(descriptor: Self.name("log_write_requests", help: "Pieces of work written to the decision log since start (a round's records, or one write of its own)."))
        batchSizeLargest = registry.makeGauge(descriptor: Self.name("log_batch_size_max", help: "Largest number of pieces of work committed in one transaction (a round)."))
        batchSizeMean = registry.makeGauge(descriptor: Self.name("log_batch_size_mean", help: "Mean number of pieces of work committed in one transaction."))
        phaseTwoRetries = registry.makeCounter(descriptor: Self.name("phase_two_retries_total",
            help: "Commit or abort messages sent again to a participant that had not acknowledged (timer or operator)."))
        oldestUndecided = registry.makeGauge(descriptor: Self.name("oldest_undecided_seconds",
            help: "Age of the oldest transaction recorded and not yet decided; 0 when none."))
        oldestUnacknowledged = registry.makeGauge(descriptor: Self.name("oldest_unacknowledged_seconds",
            help: "Time since the decision of the oldest transaction whose phase 2 is still owed; 0 when none."))
    }

    /// What the operator's metrics read at each scrape, besides the log's counters.
    struct Snapshot: Sendable {
        var reachability: [ParticipantLinks.Reachability]
        var owed: [ParticipantID: Int]
        var undecidedSince: Date?
        var unacknowledgedSince: Date?
    }

    private func participantGauges(_ snapshot: Snapshot) {
        var participants = Set(snapshot.owed.keys)
        for entry in snapshot.reachability { participants.insert(entry.participant) }
        let reachability = Dictionary(snapshot.reachability.map { ($0.participant, $0) }, uniquingKeysWith: { a, _ in a })
        for participant in participants {
            let labels = [("participant", participant.rawValue)]
            registry.makeGauge(descriptor: Self.name("outstanding_messages",
                help: "Messages to the participant queued or in requests not yet answered."), labels: labels)
                .set(Int64(reachability[participant]?.outstandingMessages ?? 0))
            registry.makeGauge(descriptor: Self.name("owed_acknowledgements",
                help: "Decided transactions still waiting for the participant's acknowledgement."), labels: labels)
                .set(Int64(snapshot.owed[participant] ?? 0))
            registry.makeGauge(descriptor: Self.name("unreachable_seconds",
                help: "How long every request to the participant has failed; 0 while it answers."), labels: labels)
                .set(Self.seconds(reachability[participant]?.unreachableFor ?? .zero))
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// The metric `arbiter_NAME`.
    private static func name(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "arbiter", subsystem: nil, metricName: name, unitName: "", helpText: help)
    }

    func transactions(_ outcome: Outcome) -> Counter { outcome == .committed ? committed : aborted }

    /// The Prometheus text, with the log's counters read now.
    func exposition(log statistics: StoreWriterStatistics, snapshot: Snapshot? = nil) -> String {
        if let snapshot {
            participantGauges(snapshot)
            let now = Date()
            oldestUndecided.set(snapshot.undecidedSince.map { max(0, now.timeIntervalSince($0)) } ?? 0)
            oldestUnacknowledged.set(snapshot.unacknowledgedSince.map { max(0, now.timeIntervalSince($0)) } ?? 0)
        }
        fsyncs.set(Int64(statistics.forcedTransactionCount))
        lazyCommits.set(Int64(statistics.lazyTransactionCount))
        logWrites.set(Int64(statistics.pieceCount))
        batchSizeLargest.set(Int64(statistics.transactionSizeLargest))
        batchSizeMean.set(statistics.transactionSizeMean)
        return registry.emitToString()
    }
}
