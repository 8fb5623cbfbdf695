public import ArbiterCore

/// The protocol logic the simulator runs: the real machines, or a deliberately broken variant.
///
/// The broken variants exist to prove that the invariant checker can fail. Each reproduces a
/// mistake a real implementation could make, by wrapping the correct machine and corrupting the
/// effects it returns, so the production machines carry no test-only switches.
public enum ProtocolVariant: String, CaseIterable, Hashable, Sendable {
    case correct
    /// The participant votes yes before its prepared record is durable: its store does not fsync
    /// prepared records.
    case participantVotesBeforeForcing
    /// The participant acknowledges a commit (or reports a one-phase commit) before its committed
    /// record is durable: its store does not fsync committed records.
    case participantAcknowledgesBeforeForcing
    /// The participant aborts a prepared transaction alone when its inquiry timer fires.
    case participantAbortsWhenInDoubt
    /// The coordinator sends commit (and reports it) before the commit decision is durable.
    case coordinatorCommitsBeforeForcing
    /// The coordinator answers inquiries about transactions it does not know with "committed".
    case coordinatorPresumesCommit
    /// The coordinator answers an inquiry about an id nobody knows "aborted" without recording the
    /// abort first (so a later submit of the id runs afresh).
    case coordinatorAnswersUnknownWithoutRecording
    /// The coordinator runs a resubmitted id afresh instead of answering it from the log.
    case coordinatorIgnoresTheLog
    /// The decision log's write returns before it is durable (a store that does not fsync): the
    /// loop advances — commits go out, clients hear — on records a crash can still lose.
    case coordinatorLogSkipsFsync

    /// A cluster's shared store writes a decision whoever owns the transaction and whatever it
    /// holds: no owner, epoch or state check, so a coordinator paused past its lease overwrites
    /// the decision of the one that took its transaction over.
    case clusterStoreSkipsFencing

    public static var broken: [ProtocolVariant] { allCases.filter { $0 != .correct } }
}

/// Decides an in-doubt transaction alone (abort) instead of asking the coordinator.
struct AbortsWhenInDoubtParticipant: ParticipantLogic {
    var machine: ParticipantMachine

    mutating func handle(_ event: ParticipantEvent) -> [ParticipantEffect] {
        if case .timerFired(let timer) = event, timer.kind == .inquiry, machine.state(of: timer.txid) == .prepared {
            // Recorded as an ordinary abort: the bug is that nobody asked for it.
            return machine.handle(.decideHeuristically(timer.txid, .aborted)).map { effect in
                if case .force(let records) = effect {
                    return .force(records.map { record in
                        if case .aborted(let txid, _) = record { return .aborted(txid, heuristic: false) }
                        return record
                    })
                }
                return effect
            }
        }
        return machine.handle(event)
    }

    func state(of txid: TxID) -> ParticipantState? { machine.state(of: txid) }
    var knownCount: Int { machine.knownCount }
}

/// A wrapper of the correct coordinator machine that forwards everything but ``handle(_:)``.
protocol WrappedCoordinator: CoordinatorLogic {
    var machine: CoordinatorMachine { get set }
}

extension WrappedCoordinator {
    func phase(of txid: TxID) -> CoordinatorPhase? { machine.phase(of: txid) }
    var activeCount: Int { machine.activeCount }
    var identity: CoordinatorID {
        get { machine.identity }
        set { machine.identity = newValue }
    }
    func owingAcknowledgement(_ txid: TxID) -> [ParticipantID]? { machine.owingAcknowledgement(txid) }
    func owedAcknowledgementCounts() -> [ParticipantID: Int] { machine.owedAcknowledgementCounts() }
}

/// Acts on a forced write at once, as if it were durable: the forced records that `skips` selects
/// are written lazily (`keepsRecords`) or not at all.
struct SkipsForcingCoordinator: WrappedCoordinator {
    var machine: CoordinatorMachine
    var skips: @Sendable ([CoordinatorRecord]) -> Bool = { _ in true }
    var keepsRecords = true

    mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect] {
        var output: [CoordinatorEffect] = []
        for effect in machine.handle(event) {
            if case .force(let records) = effect, skips(records), let txid = records.first?.txid {
                if keepsRecords { output.append(.write(records)) }
                output.append(contentsOf: machine.handle(.forced(txid)))
            } else {
                output.append(effect)
            }
        }
        return output
    }
}

struct PresumesCommitCoordinator: WrappedCoordinator {
    var machine: CoordinatorMachine

    mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect] {
        if case .received(let participant, .inquire(let txid)) = event, machine.phase(of: txid) == nil {
            return [.send(participant, .outcome(txid, .committed))]
        }
        return machine.handle(event)
    }
}

/// Forgets what the log says: every lookup comes back empty.
struct IgnoresTheLogCoordinator: WrappedCoordinator {
    var machine: CoordinatorMachine

    mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect] {
        if case .lookedUp(let txid, _) = event { return machine.handle(.lookedUp(txid, nil)) }
        return machine.handle(event)
    }
}

extension ProtocolVariant {
    func makeCoordinator(identity: CoordinatorID, config: CoordinatorConfig, seed: UInt64) -> any CoordinatorLogic {
        let machine = CoordinatorMachine(identity: identity, config: config, seed: seed)
        switch self {
        case .coordinatorCommitsBeforeForcing: return SkipsForcingCoordinator(machine: machine)
        case .coordinatorPresumesCommit: return PresumesCommitCoordinator(machine: machine)
        case .coordinatorAnswersUnknownWithoutRecording:
            // Drops the presumed abort's record and answers at once.
            return SkipsForcingCoordinator(machine: machine, skips: { records in
                if case .decided(_, .aborted, _, _)? = records.first { true } else { false }
            }, keepsRecords: false)
        case .coordinatorIgnoresTheLog: return IgnoresTheLogCoordinator(machine: machine)
        default: return machine
        }
    }

    /// The records a broken participant store does not fsync.
    var participantSkipsForcing: @Sendable (ParticipantRecord) -> Bool {
        switch self {
        case .participantVotesBeforeForcing: { if case .prepared = $0 { true } else { false } }
        case .participantAcknowledgesBeforeForcing: { if case .committed = $0 { true } else { false } }
        default: { _ in false }
        }
    }

    func makeParticipant(config: ParticipantConfig, seed: UInt64) -> any ParticipantLogic {
        let machine = ParticipantMachine(config: config, seed: seed)
        switch self {
        case .participantAbortsWhenInDoubt:
            return AbortsWhenInDoubtParticipant(machine: machine)
        default:
            return machine
        }
    }
}
