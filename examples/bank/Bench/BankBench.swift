import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import ArgumentParser
import AsyncHTTPClient
import BankCluster
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
            account of node B, one 2-participant transaction. The clients share one ArbiterClient, as \
            the tasks of one service would, which carries their concurrent submits in shared requests \
            (SubmitBatching; a submit with none collecting goes alone); --no-client-batching sends \
            one request per transfer. Each phase warms up for --warmup seconds, then measures for \
            --duration seconds.

            Per phase it reports: committed transfers/s; latency p50/p99/p99.9/max of the committed \
            transfers (every sample kept, from submit to answer at the client); aborts and why; client \
            errors; fsync and fdatasync calls per transfer of each process (counted by the kernel \
            with `perf record` on the syscall tracepoints; `n/a` without perf) and each server's own \
            count of its forced group commits per transfer (`arbiter_log_fsyncs`, \
            `arbiter_participant_fsyncs` in /metrics); CPU seconds per 1,000 transfers of \
            each process (/proc/PID/stat), the load generator (this process) included; and each \
            server's peak resident memory (VmHWM, since it started).

            The floors are measured before the first phase and after the last: fdatasync of a 4 KiB \
            write in the data directory, and one HTTP round trip on loopback with the services' stack \
            (Hummingbird server, kept-alive connection; the faster of AsyncHTTPClient and the hot \
            path's HTTP1Connections). A transfer's median at C=1 \
            is printed as a multiple of its floor: 2 fsyncs + 2 round trips for `wait: decision` \
            (client -> coordinator, prepare with the participants' forced vote, the forced \
            decision), 3 + 3 for `wait: completion` (plus commit with the participants' forced commit). \
            With them, a CPU probe (a fixed millisecond of single-threaded work, 30 times) gauges how \
            fast the cores ran: compare it across runs on a machine whose speed drifts. And the \
            skeleton of a transfer (--skeleton-samples): three processes of this executable stand \
            in for the coordinator and the two nodes, with the same stack, and do only what a \
            `wait: decision` transfer must: the client's request, the coordinator's two requests \
            to the nodes at once, a 4 KiB forced write at each node and then at the coordinator. \
            What a transfer takes beyond the skeleton is the protocol's own work; what the \
            skeleton takes beyond the floor is the cost of the transfer's shape on this machine \
            (the two nodes' requests and fsyncs at once, each hop waking a process).

            --store postgres runs the coordinators on a shared PostgreSQL decision store instead of \
            SQLite: a throwaway PostgreSQL started in the data directory (synchronous_commit on, \
            the defaults otherwise), or the one a postgres:// URL names (it must be empty of \
            Arbiter's tables, or hold only a previous bench's finished transactions). \
            --coordinators N (with a PostgreSQL store) starts N coordinators sharing it; the client \
            loops are spread over them round robin, each loop's client failing over to the others.

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

    @Flag(inversion: .prefixedNo, help: "The load generator's client carries concurrent submits in shared requests (POST /v1/transaction-batch, ArbiterClient's SubmitBatching); --no-client-batching sends one request per transfer.")
    var clientBatching = true

    @Option(help: "With client batching: how long a request collects before another may start beside it, in milliseconds (SubmitBatching.patience; default: its default).")
    var clientPatienceMs: Double?

    @Option(help: "Transfers through the skeleton (processes, hops and fsyncs of a transfer without the protocol's work), measured with the floors; 0 skips it.")
    var skeletonSamples: Int = 3000

    @Option(help: .hidden)
    var skeletonRole: String?

    @Option(help: .hidden)
    var skeletonNodes: String?

    @Flag(help: "Do not count fsyncs with perf.")
    var noPerf = false

    @Option(help: ArgumentHelp(
        "The coordinators' decision store: sqlite (each coordinator's own log), postgres (a throwaway PostgreSQL in the data directory), or a postgres:// URL.",
        valueName: "store"))
    var store: String = "sqlite"

    @Option(help: "Coordinators sharing the PostgreSQL store (1 with sqlite).")
    var coordinators: Int = 1

    @Flag(help: "Keep the data directory (the logs of the processes are in it).")
    var keepData = false

    @Flag(help: "Run every process with TLS and mutual TLS (certificates made with openssl in the data directory); the load generator presents a client certificate.")
    var tls = false

    @Option(help: ArgumentHelp(
        "Where the two banks keep their accounts: sqlite (each its own file), postgres (two throwaway PostgreSQL clusters, max_prepared_transactions 200), or two postgres:// URLs, comma-separated, one empty database each whose cluster has max_prepared_transactions of at least 200 (bank-node --postgres).",
        valueName: "store"))
    var bankStore: String = "sqlite"

    @Option(help: "With the banks on PostgreSQL: each bank's connections that stage, prepare and commit at once (bank-node --postgres-connections).")
    var bankPostgresConnections: Int = 16

    func validate() throws {
        guard (1...256).contains(bankPostgresConnections) else { throw ValidationError("--bank-postgres-connections must be 1...256") }
        guard bankStore == "sqlite" || bankStore == "postgres" || bankStore.split(separator: ",").count == 2 else {
            throw ValidationError("--bank-store takes sqlite, postgres, or two postgres:// URLs, comma-separated (one database per bank), got \(bankStore)")
        }
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
        if let skeletonRole, Skeleton.Role(rawValue: skeletonRole) == nil {
            throw ValidationError("--skeleton-role takes coordinator or node, got \(skeletonRole)")
        }
        guard skeletonSamples >= 0 else { throw ValidationError("--skeleton-samples must be 0 or more") }
        guard fsyncSamples > 0, roundTripSamples > 0 else { throw ValidationError("sample counts must be positive") }
        guard store == "sqlite" || store == "postgres" || store.hasPrefix("postgres://") || store.hasPrefix("postgresql://") else {
            throw ValidationError("--store takes sqlite, postgres or a postgres:// URL, got \(store)")
        }
        guard (1...9).contains(coordinators), store != "sqlite" || coordinators == 1 else {
            throw ValidationError("--coordinators takes 1...9, and more than 1 needs --store postgres (or a URL)")
        }
        if let clientPatienceMs, !(0...10_000).contains(clientPatienceMs) {
            throw ValidationError("--client-patience-ms must be 0...10000, got \(clientPatienceMs)")
        }
    }

    /// The load generator's batching (unless --no-client-batching).
    var submitBatching: SubmitBatching {
        var batching = SubmitBatching()
        if let clientPatienceMs { batching.patience = .microseconds(Int64(clientPatienceMs * 1000)) }
        return batching
    }

    var concurrencies: [Int] { concurrency.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    var waits: [String] { wait.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func run() async throws {
        // Handlers run on the event loop that read their request: see EventLoopExecutor.
        EventLoopExecutor.install()
        if let role = skeletonRole.flatMap(Skeleton.Role.init(rawValue:)) {
            // One of the skeleton's servers, started by a benchmark: it runs until killed.
            let nodes = skeletonNodes?.split(separator: ",").map(String.init) ?? []
            return try await Skeleton.serve(role: role, directory: dataDirectory ?? FileManager.default.temporaryDirectory.path, nodes: nodes)
        }
        let root = try prepareDataDirectory()
        var machine = MachineInfo.current()
        let systemAtStart = SystemCPU.sample()
        let startedAt = ContinuousClock.now
        progress("machine: \(machine.summary)")
        progress("data: \(root)")

        let floorsBefore = try await measureFloors(root)
        progress(ReportText.floors(floorsBefore, label: "floors"))

        let launcher: BankCluster.Launcher
        if let binDirectory {
            launcher = .init(coordinator: (binDirectory + "/arbiter", ["coordinator"]), node: (binDirectory + "/bank-node", []))
        } else {
            launcher = try .builtProducts()
        }
        // Info level: the harness reads the coordinator's "listening" line; nothing is logged per
        // transaction at that level.
        let clusterTLS = tls ? try BankCluster.TLS(directory: root + "/tls") : nil
        // A throwaway PostgreSQL for the coordinators' store lives until this function returns; its
        // data is under the system's temporary directory, on the same disk as the data directory here.
        let database: PostgresServer? = store == "postgres" ? try await PostgresServer(database: "arbiter_bench") : nil
        defer { withExtendedLifetime(database) {} }
        let storeURL: String? = store == "sqlite" ? nil : (database?.url ?? store)
        if let storeURL { progress("decision store: PostgreSQL at \(storeURL), \(coordinators) coordinator(s)") }
        // The banks on PostgreSQL: the databases given, or two throwaway clusters kept until the end.
        var throwaway: [PostgresServer] = []
        var databases = bankStore.contains(",") ? bankStore.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } : []
        if bankStore == "postgres" {
            for _ in 0..<2 { throwaway.append(try await PostgresServer(database: "bank", settings: ["max_prepared_transactions": "200"])) }
            databases = throwaway.map(\.url)
        }
        defer { withExtendedLifetime(throwaway) {} }
        if !databases.isEmpty { progress("banks on PostgreSQL: \(databases.joined(separator: ", "))") }
        let cluster = try BankCluster(options: .init(
            nodeCount: 2, root: root, launcher: launcher, logLevel: "info",
            nodeArguments: databases.isEmpty ? [] : ["--postgres-connections", "\(bankPostgresConnections)"], tls: clusterTLS,
            store: storeURL, peerCount: coordinators - 1,
            postgres: Dictionary(uniqueKeysWithValues: databases.enumerated().map { ($0.offset, $0.element) })))
        let maxConcurrency = concurrencies.max() ?? 1
        let http = HTTPClientSettings(connectionsPerHostMax: max(256, maxConcurrency * 2)).makeClient(tls: cluster.clientTLS)
        let connections = HTTP1Connections(tls: cluster.clientTLS)
        defer { connections.shutdown() }
        let metrics = MetricsReader(http: http)
        var notes: [String] = []
        do {
            try await cluster.start()
            progress("coordinator\(coordinators > 1 ? "s" : "") \(cluster.coordinators.map(cluster.url).joined(separator: " ")), nodes \(cluster.url(.node(0))) \(cluster.url(.node(1)))")
            progress("opening \(accounts) accounts on each node")
            let opening = ContinuousClock.now
            try await openAccounts(cluster)
            progress("opened in \(ContinuousClock.now - opening)")

            let counting = !noPerf && FsyncCounter.isAvailable
            if !counting {
                notes.append(noPerf ? "fsyncs per process not counted (--no-perf)"
                    : "fsyncs per process not counted: perf cannot trace syscalls here (install linux-perf, run as root)")
            }
            if await metrics.metrics(at: cluster.url(.node(0)))?[Self.groupCommitMetric["bank-a"]!] == nil {
                notes.append("bank-node reports no group-commit count in /metrics; its fsyncs per transfer are the kernel's count (perf) only")
            }

            var phases: [PhaseResult] = []
            var sample: [(txid: TxID, outcome: Outcome, nodes: [Int])] = []
            for waitName in waits {
                for clients in concurrencies {
                    let (phase, outcomes) = try await runPhase(
                        cluster: cluster, metrics: metrics, http: http, connections: connections, wait: WaitMode(rawValue: waitName)!,
                        concurrency: clients, counting: counting, floors: floorsBefore, root: root)
                    phases.append(phase)
                    sample += outcomes.prefix(max(0, Self.sampleMax - sample.count)).map { ($0.txid, $0.outcome, [0, 1]) }
                    progress(String(format: "wait=%@ C=%d: %.0f transfers/s, p50 %@ ms, p99 %@ ms, %d aborted, %d errors",
                                    waitName, clients, phase.transfersPerSecond,
                                    ReportText.milliseconds(phase.latency.p50Nanoseconds),
                                    ReportText.milliseconds(phase.latency.p99Nanoseconds), phase.aborted,
                                    phase.errors.values.reduce(0, +)))
                }
            }

            progress("checking the bank's invariants (\(sample.count) sampled outcomes)")
            try await cluster.waitUntilSettled(timeout: .seconds(120))
            let check = try await cluster.checkInvariants(expectedTotal: balance * accounts * 2, outcomes: sample)
            progress(check.description)
            let pids = cluster.members.compactMap { cluster.process($0)?.pid }
            let serverCPU = cluster.members.compactMap { cluster.process($0)?.cpuSeconds }.reduce(0, +)
            let stopping = ContinuousClock.now
            await cluster.shutdown()
            progress("cluster stopped in \(ContinuousClock.now - stopping)")
            try await http.shutdown()

            let floorsAfter = try await measureFloors(root)
            progress(ReportText.floors(floorsAfter, label: "floors after"))
            machine.loadAverageAtEnd = MachineInfo.loadAverage()
            let wall = ContinuousClock.now - startedAt
            let ownCPU = (ProcessSample.read(pid: getpid())?.cpuSeconds ?? 0) + serverCPU
            let other = SystemCPU.sample().map { end in
                OtherLoad(machineBusySeconds: end.busySeconds - (systemAtStart?.busySeconds ?? end.busySeconds),
                          stealSeconds: end.stealSeconds - (systemAtStart?.stealSeconds ?? end.stealSeconds),
                          benchmarkSeconds: ownCPU, wallSeconds: Double(wall.nanosecondsCount) / 1e9,
                          busiestOthers: SystemCPU.busiestOthers(since: systemAtStart, excluding: Set([getpid()] + pids)))
            }
            let report = BenchReport(
                machine: machine,
                configuration: BenchConfiguration(
                    concurrencies: concurrencies, waits: waits, durationSeconds: duration, warmupSeconds: warmup,
                    accountsPerNode: accounts, openingBalance: balance, dataDirectory: root,
                    fsyncCounting: counting ? "perf record -a -e \(FsyncCounter.events), by pid" : "none",
                    clientBatching: clientBatching,
                    clientPatienceMilliseconds: clientBatching ? Double(submitBatching.patience.nanosecondsCount) / 1e6 : nil),
                floorsBefore: floorsBefore, floorsAfter: floorsAfter, phases: phases,
                invariants: InvariantResult(check), otherLoad: other, notes: notes)
            print(render(report))
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(report).write(to: URL(fileURLWithPath: json))
                progress("wrote \(json)")
            }
            guard check.passed else {
                throw BenchError("BANK INVARIANTS VIOLATED; the data is kept in \(root):\n\(check)")
            }
            if !keepData && dataDirectory == nil { try? FileManager.default.removeItem(atPath: root) }
        } catch {
            for member in cluster.members { cluster.kill(member) }
            await cluster.shutdown()
            try? await http.shutdown()
            progress("failed; the data is kept in \(root)")
            throw error
        }
    }

    /// Outcomes checked against the nodes at the end, at most.
    static let sampleMax = 400

    // MARK: - Steps

    private func prepareDataDirectory() throws -> String {
        let root: String
        if let dataDirectory {
            root = dataDirectory
        } else {
            // The system's temporary directory, which here is on the same disk as everything else:
            // say which file system the floors were measured on.
            root = FileManager.default.temporaryDirectory.appendingPathComponent("bank-bench-\(UUID().uuidString)").path
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    private func measureFloors(_ root: String) async throws -> Floors {
        let fsync = try FloorMeasurement.fsync(directory: root, count: fsyncSamples)
        let roundTrips = try await FloorMeasurement.roundTrips(count: roundTripSamples)
        let cpuProbe = FloorMeasurement.cpuProbe(count: 30)
        let skeleton = skeletonSamples > 0 ? try await Skeleton.measure(directory: root, count: skeletonSamples) : nil
        let fastest = roundTrips.connections.p50Nanoseconds <= roundTrips.asyncHTTPClient.p50Nanoseconds
            ? roundTrips.connections : roundTrips.asyncHTTPClient
        return Floors(fsync: fsync, roundTrip: fastest, roundTripConnections: roundTrips.connections,
                      roundTripAsyncHTTPClient: roundTrips.asyncHTTPClient, cpuProbe: cpuProbe, skeleton: skeleton)
    }

    private func openAccounts(_ cluster: BankCluster) async throws {
        let workers = 32
        for node in 0..<2 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask { [accounts, balance] in
                        for index in stride(from: worker, to: accounts, by: workers) {
                            try await cluster.openAccount(LoadGenerator.accountID(index), balance: balance, at: node)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    private func runPhase(
        cluster: BankCluster, metrics: MetricsReader, http: HTTPClient, connections: HTTP1Connections, wait: WaitMode,
        concurrency: Int, counting: Bool, floors: Floors, root: String
    ) async throws -> (PhaseResult, [(txid: TxID, outcome: Outcome)]) {
        // No retries: a retry would hide inside a latency; a call without an outcome is counted.
        // One client per coordinator, each starting at its own.
        let urls = cluster.coordinators.map(cluster.url)
        let clients = urls.indices.map { first in
            ArbiterClient(
                coordinators: Array(urls[first...] + urls[..<first]), secret: cluster.clientToken, httpClient: http,
                connections: connections, retry: .none, batching: clientBatching ? submitBatching : nil)
        }
        let load = LoadGenerator(
            clients: clients, debitNode: cluster.participant(0), creditNode: cluster.participant(1),
            accountCount: accounts, wait: wait)
        let clock = ContinuousClock()
        let start = clock.now
        let window = (start + .seconds(warmup))..<(start + .seconds(warmup + duration))
        let completions = CompletionCounter()
        let label = "\(wait.rawValue) C=\(concurrency)"

        async let tallyResult = load.run(concurrency: concurrency, window: window, completions: completions)

        // Meanwhile: progress, and the process samples at the window's edges.
        let roles: [(String, BankCluster.Member)] = [("coordinator", .coordinator)] + cluster.peers.map { ("\($0)", $0) }
            + [("bank-a", .node(0)), ("bank-b", .node(1))]
        let monitored = roles.compactMap { role, member in cluster.process(member).map { (role, $0.pid) } }
            + [("load generator", getpid())]
        var counter: FsyncCounter?
        var before: [Int32: ProcessSample] = [:]
        var logFsyncsBefore: Double?
        var groupCommitsBefore: [String: Double] = [:]
        var lastCount = 0
        var lastTime = start
        var lastPrinted = start
        let interactive = isatty(STDERR_FILENO) != 0
        var opened = false
        while clock.now < window.upperBound {
            let now = clock.now
            if counting && counter == nil && now >= window.lowerBound - .milliseconds(1000) {
                counter = FsyncCounter.start(
                    directory: root, label: "\(wait.rawValue)-\(concurrency)",
                    seconds: Double((window.upperBound - now).nanosecondsCount) / 1e9 + 0.5)
            }
            if !opened && now >= window.lowerBound {
                opened = true
                for (_, pid) in monitored { before[pid] = ProcessSample.read(pid: pid) }
                logFsyncsBefore = await metrics.metrics(at: cluster.coordinatorURL)?["arbiter_log_fsyncs"]
                groupCommitsBefore = await groupCommits(cluster, metrics)
                if let counter { counter.mark(.start) }
            }
            let count = completions.value
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
        let logFsyncsAfter = await metrics.metrics(at: cluster.coordinatorURL)?["arbiter_log_fsyncs"]
        let groupCommitsAfter = await groupCommits(cluster, metrics)
        if interactive { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }

        let tally = await tallyResult
        let fsyncs = await counter?.stop(pids: monitored.map(\.1)) ?? [:]

        // Let phase 2 of the last transfers finish before the next phase starts.
        for coordinator in cluster.coordinators {
            await waitUntilIdle(metrics: metrics, coordinator: cluster.url(coordinator), timeout: .seconds(60))
        }

        let windowSeconds = duration
        let committed = tally.committedCount
        let perTransfer = { (value: Double) -> Double in committed > 0 ? value / Double(committed) : 0 }
        let processes = monitored.map { role, pid -> ProcessResult in
            let cpu = (after[pid]?.cpuSeconds ?? 0) - (before[pid]?.cpuSeconds ?? 0)
            let commits = zip(groupCommitsBefore[role], groupCommitsAfter[role]).map { Int($1 - $0) }
            return ProcessResult(
                role: role, pid: pid, cpuSeconds: cpu, cpuSecondsPerThousandTransfers: perTransfer(cpu) * 1000,
                peakRSSBytes: after[pid]?.peakRSSBytes ?? 0,
                fsyncs: counting && role != "load generator" ? fsyncs[pid] : nil,
                fsyncsPerTransfer: counting && role != "load generator" ? fsyncs[pid].map { perTransfer(Double($0)) } : nil,
                groupCommits: commits, groupCommitsPerTransfer: commits.map { perTransfer(Double($0)) })
        }
        let (floorFsyncs, floorTrips) = ReportText.floorShape(wait.rawValue)
        let latency = LatencySummary(tally.latency)
        let result = PhaseResult(
            wait: wait.rawValue, concurrency: concurrency, windowSeconds: windowSeconds,
            committed: committed, aborted: tally.abortedCount, abortReasons: tally.abortReasons, errors: tally.errors,
            transfersPerSecond: Double(committed) / windowSeconds, latency: latency,
            p50OverFloor: latency.p50Nanoseconds / floors.floorNanoseconds(fsyncs: floorFsyncs, roundTrips: floorTrips),
            p50OverSkeleton: wait == .decision && concurrency == 1 ? floors.skeleton.map { latency.p50Nanoseconds / $0.p50Nanoseconds } : nil,
            coordinatorLogFsyncs: zip(logFsyncsBefore, logFsyncsAfter).map { Int($1 - $0) },
            processes: processes)
        return (result, tally.sample)
    }

    /// The gauge of forced group commits (fsyncs the service counts itself) of each server.
    static let groupCommitMetric = ["coordinator": "arbiter_log_fsyncs", "bank-a": "arbiter_participant_fsyncs", "bank-b": "arbiter_participant_fsyncs"]

    /// Each server's forced group commits so far, from its /metrics.
    private func groupCommits(_ cluster: BankCluster, _ metrics: MetricsReader) async -> [String: Double] {
        var counts: [String: Double] = [:]
        for (role, member) in [("coordinator", BankCluster.Member.coordinator), ("bank-a", .node(0)), ("bank-b", .node(1))] {
            if let value = await metrics.metrics(at: cluster.url(member))?[Self.groupCommitMetric[role]!] { counts[role] = value }
        }
        return counts
    }

    /// Waits, at most `timeout`, until the coordinator drives no transaction.
    private func waitUntilIdle(metrics: MetricsReader, coordinator: String, timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let inFlight = await metrics.metrics(at: coordinator)?["arbiter_transactions_in_flight"], inFlight == 0 { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        progress("warning: transactions still in flight after \(timeout)")
    }

    private func render(_ report: BenchReport) -> String {
        var out = "\n## bank-bench results\n\n"
        out += "machine: \(report.machine.summary)\n"
        if let other = report.otherLoad {
            out += String(format: "other processes used %.2f cores on average during the run, the hypervisor took %.2f (steal)",
                          other.othersCoreShare, other.stealCoreShare)
            out += other.busiestOthers.isEmpty ? "\n" : " (busiest: \(other.busiestOthers.joined(separator: ", ")))\n"
        }
        out += "phases: \(report.configuration.durationSeconds) s measured after \(report.configuration.warmupSeconds) s warm-up; "
        out += "\(report.configuration.accountsPerNode) accounts per node; "
        out += report.configuration.clientBatching == true
            ? "the load generator batches its submits (POST /v1/transaction-batch"
                + (report.configuration.clientPatienceMilliseconds.map { ", patience \(ReportText.decimal($0, 1)) ms" } ?? "") + ")\n"
            : "one request per transfer\n"
        out += ReportText.floors(report.floorsBefore, label: "floors before") + "\n"
        if let after = report.floorsAfter { out += ReportText.floors(after, label: "floors after") + "\n" }
        out += ReportText.tables(report)
        for note in report.notes { out += "\nnote: \(note)" }
        if let invariants = report.invariants {
            out += "\ninvariants: " + (invariants.holds ? "hold" : "VIOLATED") + "\n"
            for check in invariants.checks { out += "  \(check.passed ? "ok" : "FAILED") \(check.name)\(check.detail.isEmpty ? "" : ": " + check.detail)\n" }
        }
        return out
    }
}

/// Prints a progress line on standard error.
func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

private func zip(_ a: Double?, _ b: Double?) -> (Double, Double)? {
    guard let a, let b else { return nil }
    return (a, b)
}
