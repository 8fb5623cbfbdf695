import ArbiterCore
import ArbiterHTTP
import ArbiterStorage
import Benchmark
import Foundation

// Micro-benchmarks of the steps a transfer costs, apart from the network and the processes:
// the coordinator's and a participant's state machines for one 2-branch transaction, the wire
// encoding of a batch, and one round of N forced decisions written to the log. Run them with
//
//     cd Benchmarks && swift package benchmark
//
// (`swift package benchmark --filter 'round.*'` for some of them). bank-bench measures the
// whole system; these say what one step costs, so that a change to one can be judged alone.

let benchmarks: @Sendable () -> Void = {
    let cpu = Benchmark.Configuration(
        // Wall clock, not CPU time: the process's CPU clock ticks in 10 ms here.
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 1_000
    )

    // MARK: State machines

    Benchmark("coordinator: 2-branch commit (submit, 2 votes, forced, 2 acks)", configuration: cpu) { benchmark in
        var machine = CoordinatorMachine(identity: CoordinatorID("http://127.0.0.1:7000"), seed: 1)
        let ids = Fixtures.transactionIDs(count: benchmark.scaledIterations.count, prefix: "co")
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            blackHole(Fixtures.commit(ids[index], in: &machine))
        }
        benchmark.stopMeasurement()
        precondition(machine.activeCount == 0, "the coordinator did not finish its transactions")
    }

    Benchmark("participant: prepare, staged, commit, forced, retention", configuration: cpu) { benchmark in
        var machine = ParticipantMachine(seed: 1)
        let ids = Fixtures.transactionIDs(count: benchmark.scaledIterations.count, prefix: "pa")
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            blackHole(Fixtures.prepareAndCommit(ids[index], in: &machine))
        }
        benchmark.stopMeasurement()
        precondition(machine.knownCount == 0, "the participant did not forget its transactions")
    }

    // MARK: Wire encoding

    for count in [1, 64, 256] {
        let messages = Fixtures.prepares(count: count)
        Benchmark("wire: encode BatchRequest of \(count) prepares", configuration: cpu) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(try! WireJSON.encode(try! BatchRequest(messages)))
            }
        }
        let encoded = try! WireJSON.encode(try! BatchRequest(messages))
        Benchmark("wire: decode and validate BatchRequest of \(count) prepares", configuration: cpu) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(try! WireJSON.decode(BatchRequest.self, from: encoded).validated(limits: .default))
            }
        }
    }

    // MARK: A round's write

    // One iteration: a coordinator loop's round of N commit decisions, written as one SQLite
    // transaction with one fsync (`DecisionLog.commitNow`). This includes the fsync, so it moves
    // with the disk.
    for count in [1, 16, 64, 256] {
        let fixture = RoundFixture()
        Benchmark(
            "round: \(count) forced decisions",
            configuration: .init(
                metrics: [.wallClock, .throughput],
                maxDuration: .seconds(5),
                maxIterations: 300,
                setup: { try await fixture.open() },
                teardown: { try await fixture.close() }
            )
        ) { benchmark in
            let log = fixture.log!
            let batch = fixture.nextIDs(count: count)
            let records = batch.map { CoordinatorRecord.decided($0, .committed, notify: Fixtures.participants, reason: nil) }
            benchmark.startMeasurement()
            try! log.commitNow(records, durability: .forced)
            benchmark.stopMeasurement()
        }
    }
}

enum Fixtures {
    static let coordinator = CoordinatorID("http://127.0.0.1:7000")
    static let participants = [ParticipantID("http://127.0.0.1:9001"), ParticipantID("http://127.0.0.1:9002")]
    static let branches = [
        Branch(participant: participants[0], payload: Payload(#"{"op":"debit","account":"a00042","amount":17}"#)),
        Branch(participant: participants[1], payload: Payload(#"{"op":"credit","account":"a00917","amount":17}"#)),
    ]

    static func transactionIDs(count: Int, prefix: String) -> [TxID] {
        (0..<count).map { try! TxID("\(prefix)-\(UInt64.random(in: 0 ... .max))-\($0)") }
    }

    /// One 2-branch transaction from submit to completion; returns the number of effects.
    static func commit(_ txid: TxID, in machine: inout CoordinatorMachine) -> Int {
        var effects = machine.handle(.submit(txid, branches: branches, timeout: nil)).count
        effects += machine.handle(.lookedUp(txid, nil)).count
        effects += machine.handle(.received(from: participants[0], .vote(txid, .yes))).count
        effects += machine.handle(.received(from: participants[1], .vote(txid, .yes))).count
        effects += machine.handle(.forced(txid)).count
        effects += machine.handle(.received(from: participants[0], .acknowledge(txid, .committed))).count
        effects += machine.handle(.received(from: participants[1], .acknowledge(txid, .committed))).count
        return effects
    }

    /// One branch at a participant: prepare to acknowledged commit, then its retention timer fires.
    static func prepareAndCommit(_ txid: TxID, in machine: inout ParticipantMachine) -> Int {
        let prepare = PrepareRequest(txid: txid, coordinator: coordinator, payload: branches[0].payload, onePhase: false)
        var effects = machine.handle(.received(from: coordinator, .prepare(prepare))).count
        effects += machine.handle(.staged(txid, .yes)).count
        effects += machine.handle(.received(from: coordinator, .commit(txid))).count
        effects += machine.handle(.forced(txid)).count
        effects += machine.handle(.timerFired(TimerID(.retention, txid))).count
        return effects
    }

    static func prepares(count: Int) -> [CoordinatorMessage] {
        (0..<count).map { index in
            .prepare(PrepareRequest(
                txid: try! TxID("arbiter-1a2b3c-\(index)"), coordinator: coordinator,
                payload: Payload(#"{"op":"debit","account":"a\#(10_000 + index)","amount":\#(index + 1)}"#), onePhase: false))
        }
    }
}

/// A decision log in a temporary directory, opened for one benchmark and removed after it.
final class RoundFixture: @unchecked Sendable {
    // @unchecked: set in setup, read by the benchmark, cleared in teardown; package-benchmark runs
    // these one after another, never at once.
    private(set) var log: DecisionLog?
    private var directory: String?
    private var next = 0

    func open() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("arbiter-micro-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.directory = directory
        log = try DecisionLog(path: directory + "/coordinator.sqlite")
    }

    func nextIDs(count: Int) -> [TxID] {
        defer { next += count }
        return (next..<next + count).map { try! TxID("gc-\($0)") }
    }

    func close() async throws {
        try await log?.close()
        log = nil
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }
}
