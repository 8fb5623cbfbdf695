public import ArbiterCore

/// Simulated time in microseconds since the start of a run.
public typealias SimTime = Int64

extension Duration {
    /// This duration in whole microseconds, rounded down.
    var microseconds: SimTime {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}

/// The shape of one simulated run: cluster size, load, and the fault mix.
///
/// Each seed picks its own mix ("swarm testing"): some runs lose many messages and never crash,
/// others crash often on a clean network, so that rare interleavings of one kind are not drowned by
/// noise of another.
public struct SimulationOptions: Hashable, Sendable {
    public var participantCount: Int
    public var transactionCount: Int
    /// Client submissions are spread uniformly over this window.
    public var submitWindow: SimTime
    /// After this, faults stop and every node is restarted and reconnected.
    public var faultPhase: SimTime
    /// How long the run may take after the fault phase for every transaction to end (liveness).
    public var settlePhase: SimTime

    public var dropRate: Double
    public var duplicateRate: Double
    /// Chance that a message takes an extra random path delay that lets later ones overtake it.
    public var reorderRate: Double
    /// Chance that a message is held up for a long time (hundreds of milliseconds).
    public var delayRate: Double
    /// Mean time between partitions (0: none).
    public var partitionInterval: SimTime
    /// Mean time between crashes (0: none).
    public var crashInterval: SimTime
    /// Chance that a crash lands in the middle of a step, between two of its effects.
    public var crashMidStepRate: Double
    /// Chance that a send to a node that is down fails fast (connection refused) instead of vanishing.
    public var refuseRate: Double
    /// Chance that a round's write fails whole (a full disk, an I/O error), at any node: nothing of
    /// it is applied, and the loop tries the round again after a backoff.
    public var failedWriteRate: Double = 0
    /// Chance that one piece of a participant's round fails alone (its resource's apply threw): it is
    /// rolled back alone, and the loop runs it again in a later round.
    public var failedPieceRate: Double = 0

    /// Chance of a `no` vote, and of a read-only vote, in a branch's payload.
    public var noVoteRate: Double
    public var readOnlyRate: Double
    /// Keys per participant: fewer keys, more lock conflicts.
    public var keyCount: Int

    public var coordinator: CoordinatorConfig
    public var participant: ParticipantConfig
    /// How long a client waits for an answer before it submits the same transaction again.
    public var clientRetryInterval: SimTime = 3_000_000
    /// How long a participant's request waits for its answers before the rest are `unavailable`.
    public var participantReplyTimeout: Duration = .seconds(10)

    /// Coordinators: one with a log of its own, or a cluster of several over one shared store.
    public var coordinatorCount = 1
    /// A cluster coordinator's lease on the shared store; it renews every third of it and sweeps
    /// for orphans every half.
    public var lease: SimTime = 1_000_000
    /// Mean time between pauses of a cluster coordinator (0: none); each lasts one to three
    /// leases, so that the others take its work over while it still believes it owns it.
    public var pauseInterval: SimTime = 0
    /// The chance that a client whose transaction has no outcome yet asks another coordinator of
    /// the cluster next time (always when its coordinator is down).
    public var failoverRate: Double = 0

    /// A calm, fault-free cluster: the starting point for scripted scenarios.
    public static func calm(participants: Int = 2) -> SimulationOptions {
        SimulationOptions(
            participantCount: participants, transactionCount: 0, submitWindow: 0,
            faultPhase: 0, settlePhase: 600_000_000,
            dropRate: 0, duplicateRate: 0, reorderRate: 0, delayRate: 0,
            partitionInterval: 0, crashInterval: 0, crashMidStepRate: 0, refuseRate: 0,
            noVoteRate: 0, readOnlyRate: 0, keyCount: 1_000_000,
            coordinator: CoordinatorConfig(
                prepareTimeout: .seconds(1),
                phaseTwoRetry: Backoff(initial: .milliseconds(50), max: .seconds(2))),
            participant: ParticipantConfig(
                inquiryTimeout: .milliseconds(500),
                inquiryRetry: Backoff(initial: .milliseconds(200), max: .seconds(4)),
                retention: .seconds(3600),
                memoryRetention: .seconds(3600))
        )
    }

    /// The options that `seed` picks. A seed always picks the same ones.
    public static func swarm(seed: UInt64, transactions: Int? = nil) -> SimulationOptions {
        var random = SplitMix64(seed: seed ^ 0x5157_4152_4D00_0000)
        func pick<T>(_ choices: [T]) -> T { choices[Int.random(in: 0..<choices.count, using: &random)] }
        var options = SimulationOptions.calm(participants: Int.random(in: 2...5, using: &random))
        options.transactionCount = transactions ?? Int.random(in: 8...16, using: &random)
        options.submitWindow = pick([200_000, 1_000_000, 3_000_000])
        options.faultPhase = options.submitWindow + pick([1_000_000, 4_000_000])
        options.settlePhase = 300_000_000
        options.dropRate = pick([0, 0.01, 0.05, 0.2])
        options.duplicateRate = pick([0, 0.02, 0.1])
        options.reorderRate = pick([0, 0.1, 0.5])
        options.delayRate = pick([0, 0.01, 0.05, 0.2])
        options.partitionInterval = pick([0, 0, 500_000, 2_000_000])
        options.crashInterval = pick([0, 150_000, 500_000, 2_000_000])
        options.crashMidStepRate = pick([0, 0.3])
        options.refuseRate = pick([0, 0.5])
        options.failedWriteRate = pick([0, 0, 0.02, 0.1])
        options.failedPieceRate = pick([0, 0, 0.02, 0.1])
        options.noVoteRate = pick([0, 0.05, 0.15])
        options.readOnlyRate = pick([0, 0.05, 0.2])
        options.keyCount = pick([2, 8, 64])
        options.coordinator.prepareTimeout = pick([.milliseconds(200), .seconds(1)])
        options.participant.inquiryTimeout = pick([.milliseconds(100), .milliseconds(500), .seconds(2)])
        // Short enough that settling exercises the cleanup of ended records, far longer than any
        // message can stay in flight.
        options.participant.retention = .seconds(60)
        // Memory forgets ended transactions sooner than the store, often while duplicates and
        // resends are still in flight, so that the answers from the store are exercised.
        options.participant.memoryRetention = pick([.milliseconds(1), .milliseconds(50), .seconds(1), .seconds(60)])
        // Impatient clients resubmit while the first attempt's messages are still in flight.
        options.clientRetryInterval = pick([100_000, 400_000, 3_000_000])
        // A short reply deadline answers requests `unavailable` while their work goes on.
        options.participantReplyTimeout = pick([.milliseconds(50), .seconds(10)])
        // One seed in three runs a cluster of coordinators over a shared store.
        options.coordinatorCount = pick([1, 1, 1, 1, 2, 3])
        if options.coordinatorCount > 1 {
            options.lease = pick([200_000, 1_000_000])
            options.pauseInterval = pick([0, 300_000, 1_000_000])
            options.failoverRate = pick([0, 0.3, 1])
            // Unavailable-store faults are failed writes, counted with the rest.
        }
        return options
    }
}

/// The kinds of fault the simulator injects; each run counts how many of each it injected.
public enum FaultKind: String, CaseIterable, Hashable, Sendable, Comparable {
    case drop, duplicate, reorder, delay, partition, refuse
    case coordinatorCrash, participantCrash, crashMidStep
    /// A record that was written but not forced, lost in a crash.
    case lostRecord
    /// A client resubmitted a transaction because it had no answer yet.
    case clientRetry
    /// A round's write failed whole; the loop held the round and wrote it again.
    case failedWrite
    /// One piece of a participant's round failed alone and was run again later.
    case failedPiece
    /// A cluster coordinator paused past its lease, and a client that asked another coordinator.
    case pause, failover

    public static func < (lhs: FaultKind, rhs: FaultKind) -> Bool { lhs.rawValue < rhs.rawValue }
}
