import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArgumentParser
import AsyncHTTPClient
import Foundation
import Synchronization

/// `bank-bench`: transfers per second and latency of 2-participant transfers against real
/// processes, read against the physical floors measured in the same run.
@main
struct BankBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bank-bench",
        abstract: "Benchmark Arbiter with the bank: transfers/s and latency against the physical floor.",
        discussion: """
            Starts a coordinator (`arbiter coordinator`) and two bank nodes (`bank-node`) as processes \
            on 127.0.0.1, with their SQLite files in a data directory on disk (normal durability: every \
            forced write is fsynced). Opens --accounts accounts on each node, then for each wait mode \
            and each concurrency C runs C clients in this process, each submitting one transfer after \
            another: a debit of 1-100 cents on a random account of node A and a credit on a random \
            account of node B, one 2-participant transaction. Each phase warms up for --warmup \
            seconds, then measures for --duration seconds.

            Per phase it reports: committed transfers/s; latency p50/p99/p99.9/max of the committed \
            transfers (HdrHistogram, from submit to answer at the client); aborts and why; client \
            errors; fsync and fdatasync calls per transfer of each process (counted by the kernel \
            with `perf record` on the syscall tracepoints; `n/a` without perf) and the coordinator's \
            group commits per transfer (`arbiter_log_fsyncs`); CPU seconds per 1,000 transfers of \
            each process (/proc/PID/stat), the load generator (this process) included; and each \
            server's peak resident memory (VmHWM, since it started).

            The floors are measured before the first phase and after the last: fdatasync of a 4 KiB \
            write in the data directory, and one HTTP round trip on loopback with the services' stack \
            (Hummingbird server, AsyncHTTPClient, kept-alive connection). A transfer's median at C=1 \
            is printed as a multiple of its floor: 2 fsyncs + 2 round trips for `wait: decision` \
            (client -> coordinator, prepare with the participants' forced vote, the forced \
            decision), 3 + 3 for `wait: completion` (plus commit with the participants' forced commit).

            At the end it waits until nothing is in flight and checks the bank's invariants: the sum \
            of all balances is unchanged, none is negative, nothing stays reserved. It exits non-zero \
            when they do not hold.

            Build it in release mode: `swift build -c release --product bank-bench` (it runs the \
            `arbiter` and `bank-node` executables found beside it: build them too, or give \
            --bin-directory). Plot a --json file with examples/bank/Bench/plot.py.
            """
    )

    @Option(name: .long, help: "Concurrencies to run, comma-separated.")
    var concurrency: String = "1,16,64,256"

    @Option(help: "Wait modes, comma-separated: decision (answer when the decision is durable), completion (when every participant has acknowledged).")
    var wait: String = "decision,completion"

    @Option(help: "Measured seconds per phase.")
    var duration: Double = 10

    @Option(help: "Warm-up seconds per phase (not measured).")
    var warmup: Double = 3

    @Option(help: "Accounts opened on each bank node. Conflicts (a lock held by another transfer) abort a transfer; with N accounts and C clients about C/N of transfers conflict.")
    var accounts: Int = 10_000

    @Option(help: "Opening balance of each account, in cents.")
    var balance: Int = 1_000_000_000

    @Option(help: "Where the coordinator and the nodes keep their data (a new temporary directory, removed afterwards, when not given).")
    var dataDirectory: String?

    @Option(help: "Where the `arbiter` and `bank-node` executables are (default: beside this one).")
    var binDirectory: String?

    @Option(help: "Write the results as JSON to this file.")
    var json: String?

    @Option(help: "fdatasync samples for the fsync floor.")
    var fsyncSamples: Int = 300

    @Option(help: "Round trips for the loopback floor.")
    var roundTripSamples: Int = 3000

    @Flag(help: "Do not count fsyncs with perf.")
    var noPerf = false

    @Flag(help: "Keep the data directory (the logs of the processes are in it).")
    var keepData = false

    func validate() throws {
        guard !concurrencies.isEmpty, concurrencies.allSatisfy({ (1...4096).contains($0) }) else {
            throw ValidationError("--concurrency takes a comma-separated list of 1...4096, got \(concurrency)")
        }
        guard !waits.isEmpty, waits.allSatisfy({ WaitMode(rawValue: $0) != nil }) else {
            throw ValidationError("--wait takes decision and/or completion, got \(wait)")
        }
        guard duration > 0, duration <= 3600, warmup >= 0, warmup <= 600 else {
            throw ValidationError("need 0 < --duration <= 3600 and 0 <= --warmup <= 600")
        }
        guard (2...1_000_000).contains(accounts) else { throw ValidationError("--accounts must be 2...1000000") }
        guard (1_000...1_000_000_000_000).contains(balance) else { throw ValidationError("--balance must be 1000...10^12 cents") }
        guard fsyncSamples > 0, roundTripSamples > 0 else { throw ValidationError("sample counts must be positive") }
    }

    var concurrencies: [Int] { concurrency.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    var waits: [String] { wait.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func run() async throws {
        let root = try prepareDataDirectory()
        let binDirectory = self.binDirectory ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        var machine = MachineInfo.current()
        let systemAtStart = SystemCPU.sample()
        let startedAt = ContinuousClock.now
        progress("machine: \(machine.summary)")
        progress("data: \(root)")

        let floorsBefore = try await measureFloors(root)
        progress(ReportText.floors(floorsBefore, label: "floors"))

        let cluster = try await LocalCluster.start(binDirectory: binDirectory, root: root)
        let secret = try BearerSecret.read(fromFile: cluster.secretPath)
        let maxConcurrency = concurrencies.max() ?? 1
        let http = HTTPClientSettings(connectionsPerHostMax: max(256, maxConcurrency * 2)).makeClient()
        var notes: [String] = []
        do {
            let api = BankAPI(http: http, secret: secret)
            progress("opening \(accounts) accounts on each node")
            for node in cluster.nodeURLs { try await api.openAccounts(on: node, count: accounts, balance: balance) }

            let counting = !noPerf && FsyncCounter.isAvailable
            if !counting {
                notes.append(noPerf ? "fsyncs per process not counted (--no-perf)"
                    : "fsyncs per process not counted: perf cannot trace syscalls here (install linux-perf, run as root)")
            }
            if await api.metrics(at: cluster.nodeURLs[0]) == nil {
                notes.append("bank-node serves no /metrics: its group commits are not reported by the node itself; the fsync counts come from the kernel (perf)")
            }

            var phases: [PhaseResult] = []
            for waitName in waits {
                for clients in concurrencies {
                    let phase = try await runPhase(
                        cluster: cluster, api: api, http: http, secret: secret, wait: WaitMode(rawValue: waitName)!,
                        concurrency: clients, counting: counting, floors: floorsBefore, root: root)
                    phases.append(phase)
                    progress(String(format: "wait=%@ C=%d: %.0f transfers/s, p50 %@ ms, p99 %@ ms, %d aborted, %d errors",
                                    waitName, clients, phase.transfersPerSecond,
                                    ReportText.milliseconds(phase.latency.p50Nanoseconds),
                                    ReportText.milliseconds(phase.latency.p99Nanoseconds), phase.aborted,
                                    phase.errors.values.reduce(0, +)))
                }
            }

            progress("checking the bank's invariants")
            let invariants = try await checkInvariants(cluster: cluster, api: api)
            await cluster.stop()
            try await http.shutdown()

            let floorsAfter = try await measureFloors(root)
            progress(ReportText.floors(floorsAfter, label: "floors after"))
            machine.loadAverageAtEnd = MachineInfo.loadAverage()
            let wall = (ContinuousClock.now - startedAt)
            let ownCPU = (ProcessSample.read(pid: getpid())?.cpuSeconds ?? 0)
                + cluster.processes.reduce(0) { $0 + (finalCPU[$1.process.pid] ?? 0) }
            let other = SystemCPU.sample().map { end in
                OtherLoad(machineBusySeconds: end.busySeconds - (systemAtStart?.busySeconds ?? end.busySeconds),
                          benchmarkSeconds: ownCPU, wallSeconds: Double(wall.nanosecondsCount) / 1e9,
                          busiestOthers: SystemCPU.busiestOthers(since: systemAtStart, excluding: Set([getpid()] + cluster.processes.map(\.process.pid))))
            }
            let report = BenchReport(
                machine: machine,
                configuration: BenchConfiguration(
                    concurrencies: concurrencies, waits: waits, durationSeconds: duration, warmupSeconds: warmup,
                    accountsPerNode: accounts, openingBalance: balance, dataDirectory: root,
                    fsyncCounting: counting ? "perf record -a -e \(FsyncCounter.events), by pid" : "none"),
                floorsBefore: floorsBefore, floorsAfter: floorsAfter, phases: phases, invariants: invariants,
                otherLoad: other, notes: notes)
            print(render(report))
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(report).write(to: URL(fileURLWithPath: json))
                progress("wrote \(json)")
            }
            if !invariants.holds {
                throw BenchError("""
                    BANK INVARIANTS VIOLATED: expected a total of \(invariants.expectedTotal) cents, found \(invariants.actualTotal); \
                    \(invariants.negativeBalances) negative balances; \(invariants.reservedLeft) cents still reserved. \
                    The data is kept in \(root).
                    """)
            }
            if !keepData && dataDirectory == nil { try? FileManager.default.removeItem(atPath: root) }
        } catch {
            cluster.kill()
            try? await http.shutdown()
            progress("failed; the processes' logs are in \(root)")
            throw error
        }
    }

    // MARK: - Steps

    private func prepareDataDirectory() throws -> String {
        let root: String
        if let dataDirectory {
            root = dataDirectory
        } else {
            // The system's temporary directory, which here is on the same disk as everything else:
            // say which file system the floors were measured on.
            root = FileManager.default.temporaryDirectory.appendingPathComponent("bank-bench-\(getpid())-\(randomSecret().prefix(8))").path
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    private func measureFloors(_ root: String) async throws -> Floors {
        let fsync = try FloorMeasurement.fsync(directory: root, count: fsyncSamples)
        let roundTrip = try await FloorMeasurement.roundTrip(count: roundTripSamples)
        return Floors(fsync: fsync, roundTrip: roundTrip)
    }

    /// CPU seconds of each server process at its last sample (for the run's total).
    private var finalCPU: [Int32: Double] { FinalCPU.shared.withLock { $0 } }

    private func runPhase(
        cluster: LocalCluster, api: BankAPI, http: HTTPClient, secret: BearerSecret, wait: WaitMode,
        concurrency: Int, counting: Bool, floors: Floors, root: String
    ) async throws -> PhaseResult {
        let client = ArbiterClient(coordinator: cluster.coordinatorURL, secret: secret, httpClient: http, retry: .none)
        let load = LoadGenerator(
            client: client, debitNode: ParticipantID(cluster.nodeURLs[0]), creditNode: ParticipantID(cluster.nodeURLs[1]),
            accountCount: accounts, wait: wait)
        let clock = ContinuousClock()
        let start = clock.now
        let window = (start + .seconds(warmup))..<(start + .seconds(warmup + duration))
        let completions = Atomic<Int>(0)
        let label = "\(wait.rawValue) C=\(concurrency)"

        async let tallyResult = load.run(concurrency: concurrency, window: window, completions: completions)

        // Meanwhile: progress, and the process samples at the window's edges.
        let monitored = cluster.processes.map { ($0.role, $0.process.pid) } + [("load generator", getpid())]
        var counter: FsyncCounter?
        var before: [Int32: ProcessSample] = [:]
        var logFsyncsBefore: Double?
        var lastCount = 0
        var lastTime = start
        var lastPrinted = start
        let interactive = isatty(STDERR_FILENO) != 0
        var opened = false
        while clock.now < window.upperBound {
            let now = clock.now
            if counting && counter == nil && now >= window.lowerBound - .milliseconds(1000) {
                counter = FsyncCounter.start(directory: root, label: "\(wait.rawValue)-\(concurrency)")
            }
            if !opened && now >= window.lowerBound {
                opened = true
                for (_, pid) in monitored { before[pid] = ProcessSample.read(pid: pid) }
                logFsyncsBefore = await api.metrics(at: cluster.coordinatorURL)?["arbiter_log_fsyncs"]
                if let counter { counter.mark(.start) }
            }
            let count = completions.load(ordering: .relaxed)
            let elapsed = Double((now - lastTime).nanosecondsCount) / 1e9
            if elapsed >= 1 {
                let rate = Double(count - lastCount) / elapsed
                let stage = now < window.lowerBound ? "warm-up" : "measuring"
                let seconds = now < window.lowerBound ? now - start : now - window.lowerBound
                let line = String(format: "[%@] %@ %.0f s: %.0f calls/s", label, stage, Double(seconds.nanosecondsCount) / 1e9, rate)
                if interactive {
                    FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
                } else if now - lastPrinted >= .seconds(5) {
                    progress(line)
                    lastPrinted = now
                }
                lastCount = count
                lastTime = now
            }
            let next = min(window.upperBound, now + .milliseconds(100))
            if !opened { try? await Task.sleep(until: min(next, window.lowerBound), clock: clock) } else { try? await Task.sleep(until: next, clock: clock) }
        }
        var after: [Int32: ProcessSample] = [:]
        for (_, pid) in monitored { after[pid] = ProcessSample.read(pid: pid) }
        counter?.mark(.end)
        let logFsyncsAfter = await api.metrics(at: cluster.coordinatorURL)?["arbiter_log_fsyncs"]
        if interactive { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }

        let tally = await tallyResult
        let fsyncs = await counter?.stop(pids: monitored.map(\.1)) ?? [:]
        FinalCPU.shared.withLock { cpu in for (pid, sample) in after { cpu[pid] = sample.cpuSeconds } }

        // Let phase 2 of the last transfers finish before the next phase starts.
        await waitUntilIdle(api: api, coordinator: cluster.coordinatorURL, timeout: .seconds(60))

        let windowSeconds = duration
        let committed = tally.committedCount
        let perTransfer = { (value: Double) -> Double in committed > 0 ? value / Double(committed) : 0 }
        let processes = monitored.map { role, pid -> ProcessResult in
            let cpu = (after[pid]?.cpuSeconds ?? 0) - (before[pid]?.cpuSeconds ?? 0)
            return ProcessResult(
                role: role, pid: pid, cpuSeconds: cpu, cpuSecondsPerThousandTransfers: perTransfer(cpu) * 1000,
                peakRSSBytes: after[pid]?.peakRSSBytes ?? 0,
                fsyncs: counting && role != "load generator" ? fsyncs[pid] : nil,
                fsyncsPerTransfer: counting && role != "load generator" ? fsyncs[pid].map { perTransfer(Double($0)) } : nil)
        }
        let (floorFsyncs, floorTrips) = ReportText.floorShape(wait.rawValue)
        let latency = LatencySummary(tally.latency)
        return PhaseResult(
            wait: wait.rawValue, concurrency: concurrency, windowSeconds: windowSeconds,
            committed: committed, aborted: tally.abortedCount, abortReasons: tally.abortReasons, errors: tally.errors,
            transfersPerSecond: Double(committed) / windowSeconds, latency: latency,
            p50OverFloor: latency.p50Nanoseconds / floors.floorNanoseconds(fsyncs: floorFsyncs, roundTrips: floorTrips),
            coordinatorLogFsyncs: zip(logFsyncsBefore, logFsyncsAfter).map { Int($1 - $0) },
            processes: processes)
    }

    /// Waits, at most `timeout`, until the coordinator drives no transaction.
    private func waitUntilIdle(api: BankAPI, coordinator: String, timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let inFlight = await api.metrics(at: coordinator)?["arbiter_transactions_in_flight"], inFlight == 0 { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        progress("warning: transactions still in flight after \(timeout)")
    }

    private func checkInvariants(cluster: LocalCluster, api: BankAPI) async throws -> InvariantResult {
        await waitUntilIdle(api: api, coordinator: cluster.coordinatorURL, timeout: .seconds(120))
        var all: [AccountView] = []
        // Reservations are dropped by the nodes' commits; wait (bounded) until none is left.
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            all = []
            for node in cluster.nodeURLs { all += try await api.accounts(on: node) }
            if all.allSatisfy({ $0.reserved == 0 }) || ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let expected = balance * accounts * cluster.nodeURLs.count
        let actual = all.reduce(0) { $0 + $1.balance }
        let negative = all.filter { $0.balance < 0 }.count
        let reserved = all.reduce(0) { $0 + $1.reserved }
        let holds = all.count == accounts * cluster.nodeURLs.count && actual == expected && negative == 0 && reserved == 0
        progress(holds ? "invariants hold: \(all.count) accounts, total \(actual) cents unchanged, none negative, nothing reserved"
                       : "INVARIANTS VIOLATED: \(all.count) accounts, total \(actual) (expected \(expected)), \(negative) negative, \(reserved) reserved")
        return InvariantResult(accountCount: all.count, expectedTotal: expected, actualTotal: actual,
                               negativeBalances: negative, reservedLeft: reserved, holds: holds)
    }

    private func render(_ report: BenchReport) -> String {
        var out = "\n## bank-bench results\n\n"
        out += "machine: \(report.machine.summary)\n"
        if let other = report.otherLoad {
            out += String(format: "other processes used %.2f cores on average during the run", other.othersCoreShare)
            out += other.busiestOthers.isEmpty ? "\n" : " (busiest: \(other.busiestOthers.joined(separator: ", ")))\n"
        }
        out += "phases: \(report.configuration.durationSeconds) s measured after \(report.configuration.warmupSeconds) s warm-up; "
        out += "\(report.configuration.accountsPerNode) accounts per node\n"
        out += ReportText.floors(report.floorsBefore, label: "floors before") + "\n"
        if let after = report.floorsAfter { out += ReportText.floors(after, label: "floors after") + "\n" }
        out += ReportText.tables(report)
        for note in report.notes { out += "\nnote: \(note)" }
        if let invariants = report.invariants {
            out += "\ninvariants: " + (invariants.holds ? "hold" : "VIOLATED")
                + " (\(invariants.accountCount) accounts, total \(invariants.actualTotal) of \(invariants.expectedTotal), \(invariants.negativeBalances) negative, \(invariants.reservedLeft) reserved)\n"
        }
        return out
    }
}

/// The last CPU sample of each process, kept across phases for the run's total.
enum FinalCPU {
    static let shared = Mutex<[Int32: Double]>([:])
}

/// Prints a progress line on standard error.
func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

private func zip(_ a: Double?, _ b: Double?) -> (Double, Double)? {
    guard let a, let b else { return nil }
    return (a, b)
}
