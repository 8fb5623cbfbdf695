public import ArbiterCore

/// The protocol logic the simulator runs: the real machines, or a deliberately broken variant.
///
/// The broken variants exist to prove that the invariant checker can fail. Each reproduces a
/// mistake a real implementation could make, by wrapping the correct machine and corrupting the
/// effects it returns, so the production machines carry no test-only switches.
public enum ProtocolVariant: String, CaseIterable, Hashable, Sendable {
    case correct
    /// The participant votes yes before its prepared record is durable.
    case participantVotesBeforeForcing
    /// The participant acknowledges a commit before its committed record is durable.
    case participantAcknowledgesBeforeForcing
    /// The participant aborts a prepared transaction alone when its inquiry timer fires.
    case participantAbortsWhenInDoubt
    /// The coordinator sends commit (and reports it) before the commit decision is durable.
    case coordinatorCommitsBeforeForcing
    /// The coordinator answers inquiries about transactions it does not know with "committed".
    case coordinatorPresumesCommit

    public static var broken: [ProtocolVariant] { allCases.filter { $0 != .correct } }
}

/// A coordinator machine as the simulator drives it.
protocol CoordinatorLogic {
    mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect]
    func phase(of txid: TxID) -> CoordinatorPhase?
    var activeCount: Int { get }
}

/// A participant machine as the simulator drives it.
protocol ParticipantLogic {
    mutating func handle(_ event: ParticipantEvent) -> [ParticipantEffect]
    func state(of txid: TxID) -> ParticipantState?
}

extension CoordinatorMachine: CoordinatorLogic {}
extension ParticipantMachine: ParticipantLogic {}

/// Turns the forced writes of the records that `skips` selects into lazy writes, and acts at once
/// as if they were durable: the classic "forgot to fsync" bug.
struct SkipsForcingParticipant: ParticipantLogic {
    var machine: ParticipantMachine
    let skips: (ParticipantRecord) -> Bool

    mutating func handle(_ event: ParticipantEvent) -> [ParticipantEffect] {
        var output: [ParticipantEffect] = []
        for effect in machine.handle(event) {
            if case .force(let records) = effect, records.contains(where: skips), let txid = records.first?.txid {
                output.append(.write(records))
                output.append(contentsOf: machine.handle(.forced(txid)))
            } else {
                output.append(effect)
            }
        }
        return output
    }

    func state(of txid: TxID) -> ParticipantState? { machine.state(of: txid) }
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
}

struct SkipsForcingCoordinator: CoordinatorLogic {
    var machine: CoordinatorMachine

    mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect] {
        var output: [CoordinatorEffect] = []
        for effect in machine.handle(event) {
            if case .force(let records) = effect, let txid = records.first?.txid {
                output.append(.write(records))
                output.append(contentsOf: machine.handle(.forced(txid)))
            } else {
                output.append(effect)
            }
        }
        return output
    }

    func phase(of txid: TxID) -> CoordinatorPhase? { machine.phase(of: txid) }
    var activeCount: Int { machine.activeCount }
}

struct PresumesCommitCoordinator: CoordinatorLogic {
    var machine: CoordinatorMachine

    mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect] {
        if case .received(let participant, .inquire(let txid)) = event, machine.phase(of: txid) == nil {
            return [.send(participant, .outcome(txid, .committed))]
        }
        return machine.handle(event)
    }

    func phase(of txid: TxID) -> CoordinatorPhase? { machine.phase(of: txid) }
    var activeCount: Int { machine.activeCount }
}

extension ProtocolVariant {
    func makeCoordinator(identity: CoordinatorID, config: CoordinatorConfig, seed: UInt64) -> any CoordinatorLogic {
        let machine = CoordinatorMachine(identity: identity, config: config, seed: seed)
        switch self {
        case .coordinatorCommitsBeforeForcing: return SkipsForcingCoordinator(machine: machine)
        case .coordinatorPresumesCommit: return PresumesCommitCoordinator(machine: machine)
        default: return machine
        }
    }

    func makeParticipant(config: ParticipantConfig, seed: UInt64) -> any ParticipantLogic {
        let machine = ParticipantMachine(config: config, seed: seed)
        switch self {
        case .participantVotesBeforeForcing:
            return SkipsForcingParticipant(machine: machine) { if case .prepared = $0 { return true } else { return false } }
        case .participantAcknowledgesBeforeForcing:
            return SkipsForcingParticipant(machine: machine) { if case .committed = $0 { return true } else { return false } }
        case .participantAbortsWhenInDoubt:
            return AbortsWhenInDoubtParticipant(machine: machine)
        default:
            return machine
        }
    }
}
