public import ArbiterCore

/// A node of the simulated cluster.
public enum SimNode: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Coordinator `index` (a coordinator alone is 0).
    case coordinator(Int)
    case participant(Int)

    public var description: String {
        switch self {
        case .coordinator(let index): return "C\(index)"
        case .participant(let index): return "P\(index)"
        }
    }
}

/// One thing that happened in a run, kept in a short ring buffer for failure reports and matched by
/// scripted scenarios.
public enum TraceEvent: Hashable, Sendable, CustomStringConvertible {
    case submitted(TxID)
    case toParticipant(Int, CoordinatorMessage)
    case toCoordinator(from: Int, ParticipantMessage)
    case refused(Int, TxID)
    case lost(from: SimNode, to: SimNode, why: String)
    case forced(SimNode, TxID)
    case timer(SimNode, TimerID)
    case crashed(SimNode, lostRecords: Int)
    case restarted(SimNode)
    /// A coordinator of a cluster stops (a paused process) until `resumed`.
    case paused(SimNode)
    case resumed(SimNode)
    /// A coordinator of a cluster took these transactions over from one whose lease expired.
    case claimed(SimNode, [TxID])
    /// The store refused a coordinator's records of a transaction another one owns now.
    case disowned(SimNode, TxID)
    case reported(TxID, Outcome)
    case faultsEnded
    case violation(String)

    public var description: String {
        switch self {
        case .submitted(let txid): return "client submits \(txid)"
        case .toParticipant(let index, let message): return "C → P\(index) \(Self.describe(message))"
        case .toCoordinator(let index, let message): return "P\(index) → C \(Self.describe(message))"
        case .refused(let index, let txid): return "C cannot reach P\(index) for \(txid) (refused)"
        case .lost(let from, let to, let why): return "message \(from) → \(to) lost (\(why))"
        case .forced(let node, let txid): return "\(node) fsync done for \(txid)"
        case .timer(let node, let timer): return "\(node) timer \(timer)"
        case .crashed(let node, let lost): return "\(node) CRASHED (lost \(lost) unforced records)"
        case .restarted(let node): return "\(node) restarted"
        case .paused(let node): return "\(node) PAUSED"
        case .resumed(let node): return "\(node) resumed"
        case .claimed(let node, let txids): return "\(node) took over \(txids.map(\.description).joined(separator: ", "))"
        case .disowned(let node, let txid): return "\(node) fenced off \(txid)"
        case .reported(let txid, let outcome): return "client told \(txid) \(outcome)"
        case .faultsEnded: return "faults end; all nodes up and connected"
        case .violation(let text): return "VIOLATION: \(text)"
        }
    }

    static func describe(_ message: CoordinatorMessage) -> String {
        switch message {
        case .prepare(let request): return "prepare \(request.txid)\(request.onePhase ? " (one-phase)" : "")"
        case .commit(let txid): return "commit \(txid)"
        case .abort(let txid): return "abort \(txid)"
        case .outcome(let txid, let answer): return "outcome \(txid) = \(answer)"
        }
    }

    static func describe(_ message: ParticipantMessage) -> String {
        switch message {
        case .vote(let txid, let vote): return "vote \(txid) = \(vote)"
        case .onePhaseOutcome(let txid, let outcome): return "one-phase outcome \(txid) = \(outcome)"
        case .acknowledge(let txid, let local): return "ack \(txid) holding \(local)"
        case .inquire(let txid): return "inquire \(txid)"
        }
    }
}

/// The last `capacity` trace events.
struct TraceBuffer {
    let capacity: Int
    private var events: [(SimTime, TraceEvent)] = []
    private var start = 0

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ event: TraceEvent, at time: SimTime) {
        if events.count < capacity {
            events.append((time, event))
        } else {
            events[start] = (time, event)
            start = (start + 1) % capacity
        }
    }

    var lines: [String] {
        let ordered = events.count < capacity ? events : Array(events[start...] + events[..<start])
        return ordered.map { time, event in
            let millis = Double(time) / 1000
            return "  t=\(String(millis))ms  \(event)"
        }
    }
}
