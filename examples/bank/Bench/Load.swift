import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import Foundation
import Synchronization

/// What one load phase (one concurrency, one wait mode) measured at the client.
struct LoadTally: Sendable {
    /// Latencies of the committed transfers completed inside the measured window, in nanoseconds.
    var latency = LatencySamples()
    var committedCount = 0
    var abortedCount = 0
    /// Aborts by reason, with account names and amounts taken out so that like reasons group.
    var abortReasons: [String: Int] = [:]
    /// Calls that got no outcome (transport errors, timeouts, 5xx after retries), by error code.
    var errors: [String: Int] = [:]
    /// A few transactions and the outcome the client was told, for the invariant check.
    var sample: [(txid: TxID, outcome: Outcome)] = []

    mutating func add(_ other: LoadTally) {
        latency.add(other.latency)
        committedCount += other.committedCount
        abortedCount += other.abortedCount
        abortReasons.merge(other.abortReasons, uniquingKeysWith: +)
        errors.merge(other.errors, uniquingKeysWith: +)
        sample += other.sample
    }
}

/// Drives 2-participant transfers (debit on node A, credit on node B) from `concurrency` clients.
struct LoadGenerator: Sendable {
    /// Client loop i submits through `clients[i % clients.count]` (one per coordinator of a cluster).
    var clients: [ArbiterClient]
    var debitNode: ParticipantID
    var creditNode: ParticipantID
    var accountCount: Int
    var wait: WaitMode

    /// Runs `concurrency` client loops until `end`; latencies and counts are kept for the calls that
    /// complete inside `window`. `completions` counts every call, for the progress line.
    func run(
        concurrency: Int, window: Range<ContinuousClock.Instant>, completions: CompletionCounter
    ) async -> LoadTally {
        await withTaskGroup(of: LoadTally.self) { group in
            for index in 0..<concurrency {
                let client = clients[index % clients.count]
                group.addTask {
                    await clientLoop(client, seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 1, window: window, completions: completions)
                }
            }
            var total = LoadTally()
            for await tally in group { total.add(tally) }
            return total
        }
    }

    private func clientLoop(_ client: ArbiterClient, seed: UInt64, window: Range<ContinuousClock.Instant>, completions: CompletionCounter) async -> LoadTally {
        var random = SplitMix64(seed: seed ^ UInt64(UInt32.random(in: .min ... .max)))
        var tally = LoadTally()
        let clock = ContinuousClock()
        while clock.now < window.upperBound {
            let from = Int(random.next() % UInt64(accountCount))
            let to = Int(random.next() % UInt64(accountCount))
            let amount = Int(random.next() % 100) + 1
            let branches = [
                Branch(participant: debitNode, payload: Payload(#"{"op":"debit","account":"\#(Self.accountID(from))","amount":\#(amount)}"#)),
                Branch(participant: creditNode, payload: Payload(#"{"op":"credit","account":"\#(Self.accountID(to))","amount":\#(amount)}"#)),
            ]
            let start = clock.now
            let result: Result<SubmitResult, ArbiterClientError>
            do {
                result = .success(try await client.submit(branches: branches, wait: wait))
            } catch {
                result = .failure(error)
            }
            let end = clock.now
            completions.increment()
            guard window.contains(end) else { continue }
            if case .success(let submitted) = result, tally.sample.count < Self.samplePerClientMax {
                tally.sample.append((submitted.id, submitted.outcome))
            }
            switch result {
            case .success(let submitted) where submitted.outcome == .committed:
                tally.committedCount += 1
                tally.latency.record(end - start)
            case .success(let submitted):
                tally.abortedCount += 1
                tally.abortReasons[Self.reasonClass(submitted.reason), default: 0] += 1
            case .failure(let error):
                tally.errors[error.code.rawValue, default: 0] += 1
            }
        }
        return tally
    }

    /// Outcomes kept per client for the final check.
    static let samplePerClientMax = 2

    /// The id of account `index` (`a00042`).
    static func accountID(_ index: Int) -> String {
        let digits = String(index)
        return "a" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// A reason with its ids, addresses and numbers masked (every word holding a digit becomes
    /// `#`), so that reasons of one kind count together.
    static func reasonClass(_ reason: String?) -> String {
        guard let reason else { return "(no reason given)" }
        let words = reason.split(separator: " ").map { word in word.contains(where: \.isNumber) ? "#" : String(word) }
        return String(words.joined(separator: " ").prefix(160))
    }
}

/// Calls completed so far, across all clients (for the progress line).
final class CompletionCounter: Sendable {
    private let count = Atomic<Int>(0)

    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
