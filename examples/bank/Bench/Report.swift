import BankCluster
import Foundation

/// Everything one run measured; `--json FILE` writes it.
struct BenchReport: Codable, Sendable {
    var machine: MachineInfo
    var configuration: BenchConfiguration
    /// Floors measured before the first load phase and after the last.
    var floorsBefore: Floors
    var floorsAfter: Floors?
    var phases: [PhaseResult]
    var invariants: InvariantResult?
    /// CPU used by processes other than the benchmark's, as a share of the machine, over the run.
    var otherLoad: OtherLoad?
    var notes: [String]
}

/// What the machine was, as the run saw it.
struct MachineInfo: Codable, Sendable {
    var cpuModel: String
    var coreCount: Int
    var memoryBytes: Int
    var kernel: String
    var loadAverageAtStart: String
    var loadAverageAtEnd: String?
    var date: String

    static func current() -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let memoryKiB = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return MachineInfo(
            cpuModel: model, coreCount: ProcessInfo.processInfo.activeProcessorCount, memoryBytes: memoryKiB * 1024,
            kernel: "Linux \(release)", loadAverageAtStart: loadAverage(), loadAverageAtEnd: nil,
            date: ISO8601DateFormatter().string(from: Date()))
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3).joined(separator: " ")
    }

    var summary: String {
        "\(coreCount) cores (\(cpuModel)), \(memoryBytes >> 30) GiB, \(kernel); load average \(loadAverageAtStart) at start"
            + (loadAverageAtEnd.map { ", \($0) at end" } ?? "")
    }
}

/// The options of the run.
struct BenchConfiguration: Codable, Sendable {
    var concurrencies: [Int]
    var waits: [String]
    var durationSeconds: Double
    var warmupSeconds: Double
    var accountsPerNode: Int
    var openingBalance: Int
    var dataDirectory: String
    var fsyncCounting: String
    /// Whether the load generator batched its submits (the default since 2026-11-24; before, only
    /// with `--client-batching`).
    var clientBatching: Bool?
    /// With client batching, the batching's patience in milliseconds.
    var clientPatienceMilliseconds: Double?
}

/// One concurrency in one wait mode.
struct PhaseResult: Codable, Sendable {
    var wait: String
    var concurrency: Int
    /// The measured window, in seconds (after the warm-up).
    var windowSeconds: Double
    var committed: Int
    var aborted: Int
    var abortReasons: [String: Int]
    var errors: [String: Int]
    /// Committed transfers completed in the window, per second.
    var transfersPerSecond: Double
    /// Latency of the committed transfers completed in the window.
    var latency: LatencySummary
    /// The median latency as a multiple of the floor (fsyncs and round trips in sequence).
    var p50OverFloor: Double
    /// The median latency as a multiple of the skeleton's median (``Skeleton``: the same processes,
    /// hops and forced writes without the protocol's work, one transfer at a time), for
    /// `wait: decision` at C=1, whose shape the skeleton has. Absent otherwise, without a
    /// skeleton, and from earlier results.
    var p50OverSkeleton: Double?
    /// Group commits of the coordinator's decision log in the window (`arbiter_log_fsyncs`).
    var coordinatorLogFsyncs: Int?
    var processes: [ProcessResult]
}

/// One process over one phase.
struct ProcessResult: Codable, Sendable {
    var role: String
    var pid: Int32
    /// CPU seconds (user + system) used in the window.
    var cpuSeconds: Double
    var cpuSecondsPerThousandTransfers: Double
    /// Peak resident memory since the process started (`VmHWM`), in bytes.
    var peakRSSBytes: Int
    /// fsync and fdatasync calls the kernel saw from this process in the window; `nil` when not
    /// counted.
    var fsyncs: Int?
    var fsyncsPerTransfer: Double?
    /// Forced group commits the process counted itself in the window (`arbiter_log_fsyncs`,
    /// `arbiter_participant_fsyncs`); `nil` when it does not report them.
    var groupCommits: Int?
    var groupCommitsPerTransfer: Double?
}

/// The bank's invariants after the run (``BankCluster/checkInvariants(expectedTotal:outcomes:)``).
struct InvariantResult: Codable, Sendable {
    struct Check: Codable, Sendable {
        var name: String
        var passed: Bool
        var detail: String
    }

    var checks: [Check]
    /// The sum of balances per node.
    var totals: [Int]
    var holds: Bool { checks.allSatisfy(\.passed) }

    init(_ report: InvariantReport) {
        checks = report.checks.map { Check(name: $0.name, passed: $0.passed, detail: $0.detail) }
        totals = report.totals
    }
}

/// Others' share of the machine while the benchmark ran.
struct OtherLoad: Codable, Sendable {
    /// Busy CPU seconds of the whole machine over the run.
    var machineBusySeconds: Double
    /// Of which stolen by the hypervisor (a virtual machine's neighbours); nil in older reports.
    var stealSeconds: Double?
    /// Of which the benchmark's own processes.
    var benchmarkSeconds: Double
    var wallSeconds: Double
    /// The busiest other processes (command name, CPU seconds), sampled at the start and the end.
    var busiestOthers: [String]

    var othersCoreShare: Double { max(0, machineBusySeconds - (stealSeconds ?? 0) - benchmarkSeconds) / wallSeconds }
    var stealCoreShare: Double { (stealSeconds ?? 0) / wallSeconds }
}

// MARK: - Text

enum ReportText {
    static func milliseconds(_ nanoseconds: Double) -> String {
        let ms = nanoseconds / 1e6
        return ms >= 100 ? String(format: "%.0f", ms) : ms >= 10 ? String(format: "%.1f", ms) : String(format: "%.2f", ms)
    }

    static func decimal(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }

    static func floors(_ floors: Floors, label: String) -> String {
        "\(label): fdatasync p50 \(milliseconds(floors.fsync.p50Nanoseconds)) ms (p99 \(milliseconds(floors.fsync.p99Nanoseconds)) ms, n=\(floors.fsync.count)); "
            + "loopback HTTP round trip p50 \(milliseconds(floors.roundTrip.p50Nanoseconds)) ms (p99 \(milliseconds(floors.roundTrip.p99Nanoseconds)) ms, n=\(floors.roundTrip.count))"
            + (floors.roundTripConnections.flatMap { lean in floors.roundTripAsyncHTTPClient.map { client in
                " (the faster of HTTP1Connections, p50 \(milliseconds(lean.p50Nanoseconds)) ms, and AsyncHTTPClient, p50 \(milliseconds(client.p50Nanoseconds)) ms)"
            } } ?? "")
            + (floors.cpuProbe.map { "; CPU probe p50 \(milliseconds($0.p50Nanoseconds)) ms (n=\($0.count))" } ?? "")
            + (floors.skeleton.map { "; skeleton of a transfer p50 \(milliseconds($0.p50Nanoseconds)) ms (p99 \(milliseconds($0.p99Nanoseconds)) ms, n=\($0.count))" } ?? "")
    }

    /// The results as Markdown tables, one pair per wait mode.
    static func tables(_ report: BenchReport) -> String {
        var out = ""
        let roles = report.phases.first?.processes.map(\.role) ?? []
        for wait in report.configuration.waits {
            let phases = report.phases.filter { $0.wait == wait }
            guard !phases.isEmpty else { continue }
            let (fsyncs, trips) = floorShape(wait)
            out += "\nwait: \(wait) — floor \(fsyncs) fsyncs + \(trips) round trips = \(milliseconds(report.floorsBefore.floorNanoseconds(fsyncs: fsyncs, roundTrips: trips))) ms"
            if wait == "decision", let skeleton = report.floorsBefore.skeleton {
                out += "; skeleton of a transfer p50 \(milliseconds(skeleton.p50Nanoseconds)) ms"
            }
            out += "\n\n| C | transfers/s | p50 ms | p99 ms | p99.9 ms | max ms | p50 / floor | p50 / skeleton | aborted | errors | log fsyncs/transfer (coordinator) |\n"
            out += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            for phase in phases {
                let errors = phase.errors.values.reduce(0, +)
                let logFsyncs = phase.coordinatorLogFsyncs.map { decimal(Double($0) / Double(max(phase.committed, 1)), 3) } ?? "n/a"
                out += "| \(phase.concurrency) | \(String(format: "%.0f", phase.transfersPerSecond)) | \(milliseconds(phase.latency.p50Nanoseconds)) | "
                    + "\(milliseconds(phase.latency.p99Nanoseconds)) | \(milliseconds(phase.latency.p999Nanoseconds)) | \(milliseconds(phase.latency.maxNanoseconds)) | "
                    + "\(decimal(phase.p50OverFloor, 1))× | \(phase.p50OverSkeleton.map { decimal($0, 1) + "×" } ?? "–") | "
                    + "\(phase.aborted) | \(errors) | \(logFsyncs) |\n"
            }
            let servers = roles.filter { $0 != "load generator" }
            out += "\n| C | " + servers.map { "\($0) fsyncs/transfer" }.joined(separator: " | ") + " | "
                + servers.map { "\($0) group commits/transfer" }.joined(separator: " | ") + " | "
                + roles.map { "\($0) CPU s/1k" }.joined(separator: " | ") + " | "
                + roles.filter { $0 != "load generator" }.map { "\($0) peak RSS MiB" }.joined(separator: " | ") + " |\n"
            out += "|---:|" + String(repeating: "---:|", count: roles.count + servers.count * 3) + "\n"
            for phase in phases {
                var cells = [String(phase.concurrency)]
                cells += phase.processes.filter { $0.role != "load generator" }.map { $0.fsyncsPerTransfer.map { decimal($0, 3) } ?? "n/a" }
                cells += phase.processes.filter { $0.role != "load generator" }.map { $0.groupCommitsPerTransfer.map { decimal($0, 3) } ?? "n/a" }
                cells += phase.processes.map { decimal($0.cpuSecondsPerThousandTransfers, 3) }
                cells += phase.processes.filter { $0.role != "load generator" }.map { String($0.peakRSSBytes >> 20) }
                out += "| " + cells.joined(separator: " | ") + " |\n"
            }
            let reasons = phases.reduce(into: [String: Int]()) { $0.merge($1.abortReasons, uniquingKeysWith: +) }
            if !reasons.isEmpty {
                out += "\naborts by reason (all C): " + reasons.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" }.joined(separator: "; ") + "\n"
            }
            let errors = phases.reduce(into: [String: Int]()) { $0.merge($1.errors, uniquingKeysWith: +) }
            if !errors.isEmpty {
                out += "errors by code (all C): " + errors.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" }.joined(separator: "; ") + "\n"
            }
        }
        return out
    }

    /// The forced writes and round trips in sequence on a transfer's critical path.
    static func floorShape(_ wait: String) -> (fsyncs: Int, roundTrips: Int) {
        wait == "completion" ? (3, 3) : (2, 2)
    }
}
