import Foundation
import Synchronization

/// What the kernel says about one process: CPU time so far and peak resident memory.
struct ProcessSample: Sendable {
    /// User plus system CPU time since the process started, in seconds.
    var cpuSeconds: Double
    /// The peak resident set size (`VmHWM`), in bytes.
    var peakRSSBytes: Int
    /// The current resident set size (`VmRSS`), in bytes.
    var rssBytes: Int

    /// Reads `/proc/PID/stat` and `/proc/PID/status`; `nil` when the process is gone.
    static func read(pid: Int32) -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ProcessSample(
            cpuSeconds: (utime + stime) / ticksPerSecond,
            peakRSSBytes: kibibytes("VmHWM:", in: status) * 1024,
            rssBytes: kibibytes("VmRSS:", in: status) * 1024)
    }

    private static func kibibytes(_ key: String, in status: String) -> Int {
        for line in status.split(separator: "\n") where line.hasPrefix(key) {
            return Int(line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0
        }
        return 0
    }
}

/// Counts fsync-family system calls per process with `perf record` on the syscall tracepoints,
/// system wide (so that threads created while it runs count too), attributed by process id.
///
/// This counts what reached the kernel — SQLite's WAL syncs and checkpoints included — whatever
/// the process reports about itself. It needs `perf` and permission to trace; when either is
/// missing, ``start(directory:label:seconds:)`` returns `nil` and the benchmark says so.
final class FsyncCounter: Sendable {
    private let pid: pid_t
    private let dataPath: String
    private let marks = Mutex<[Mark: Double]>([:])

    /// The edges of the window to count in.
    enum Mark { case start, end }

    private init(pid: pid_t, dataPath: String) {
        self.pid = pid
        self.dataPath = dataPath
    }

    static let events = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync"

    /// Whether `perf` can count the syscall tracepoints here (checked once, on a short command).
    static let isAvailable: Bool = {
        guard let perf = which("perf") else { return false }
        let output = NSTemporaryDirectory() + "/bank-bench-perf-probe-\(getpid()).txt"
        defer { unlink(output) }
        guard let pid = CleanSpawn.spawn(perf, ["stat", "-x", ",", "-e", events, "true"], output: output),
              CleanSpawn.wait(pid, timeout: .seconds(30)) == 0,
              let text = try? String(contentsOfFile: output, encoding: .utf8) else { return false }
        return text.contains("sys_enter_fsync") && !text.contains("not supported")
    }()

    /// Starts counting, for at most `seconds`; `nil` if perf is not usable here.
    static func start(directory: String, label: String, seconds: Double) -> FsyncCounter? {
        guard isAvailable, let perf = which("perf") else { return nil }
        let dataPath = directory + "/fsyncs-\(label).perf.data"
        // Timestamps on CLOCK_MONOTONIC, so that the window's edges (``mark(_:)``) can be compared.
        // The `sleep` bounds the recording should ``stop(pids:)`` never come.
        guard let pid = CleanSpawn.spawn(perf, [
            "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-e", events, "-o", dataPath,
            "--", "sleep", String(format: "%.0f", seconds + 60),
        ], output: directory + "/fsyncs-\(label).perf.log") else { return nil }
        return FsyncCounter(pid: pid, dataPath: dataPath)
    }

    /// Notes the current time as the window's start or end: only calls in between are counted.
    func mark(_ mark: Mark) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let seconds = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        marks.withLock { $0[mark] = seconds }
    }

    /// Stops the recording and returns the number of fsync-family calls made by each of `pids`
    /// between the marks.
    func stop(pids: [Int32]) async -> [Int32: Int] {
        kill(pid, SIGINT)
        guard CleanSpawn.wait(pid, timeout: .seconds(30)) != nil, let perf = FsyncCounter.which("perf") else {
            kill(pid, SIGKILL)
            _ = CleanSpawn.wait(pid, timeout: .seconds(5))
            return [:]
        }
        let scriptOutput = dataPath + ".txt"
        defer {
            unlink(dataPath)
            unlink(scriptOutput)
        }
        guard let script = CleanSpawn.spawn(perf, ["script", "-i", dataPath, "-F", "pid,time"], output: scriptOutput),
              CleanSpawn.wait(script, timeout: .seconds(60)) == 0,
              let output = try? String(contentsOfFile: scriptOutput, encoding: .utf8) else { return [:] }
        let (start, end) = marks.withLock { ($0[.start] ?? 0, $0[.end] ?? .infinity) }
        var counts: [Int32: Int] = Dictionary(uniqueKeysWithValues: pids.map { ($0, 0) })
        for line in output.split(separator: "\n") {
            // "  1234 56789.123456:"
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let pid = Int32(fields[0]), counts[pid] != nil,
                  let time = Double(fields[1].trimmingCharacters(in: CharacterSet(charactersIn: ":"))),
                  time >= start, time < end else { continue }
            counts[pid, default: 0] += 1
        }
        return counts
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Starts a process with no blocked signals and default signal handlers.
///
/// Foundation's `Process` passes on the signal mask of the thread that starts it, and Swift
/// concurrency's threads block every signal: perf started that way never sees the SIGINT that
/// stops it nor the SIGCHLD of its workload.
enum CleanSpawn {
    /// Starts `executable` with `arguments`, standard output and error to `output`.
    static func spawn(_ executable: String, _ arguments: [String], output: String) -> pid_t? {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        guard posix_spawn(&pid, executable, &actions, &attributes, argv, environ) == 0 else { return nil }
        return pid
    }

    /// Waits, at most `timeout`, for `pid` to exit; its exit status, 128+signal when killed, or
    /// `nil` when it is still running.
    static func wait(_ pid: pid_t, timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while ContinuousClock.now < deadline {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                let signal = status & 0x7f
                return signal == 0 ? (status >> 8) & 0xff : 128 + signal
            }
            if result < 0 { return nil }
            usleep(10_000)
        }
        return nil
    }
}

/// The machine's CPU time (from /proc/stat) and every process's (from /proc/PID/stat), to tell how
/// much of the machine others used while the benchmark ran.
struct SystemCPU: Sendable {
    /// Non-idle CPU seconds of all cores since boot (steal included).
    var busySeconds: Double
    /// CPU seconds the hypervisor gave to other guests while this machine's vCPUs wanted to run.
    var stealSeconds: Double
    /// CPU seconds of each process since it started, with its command name.
    var processes: [Int32: (name: String, cpuSeconds: Double)]

    static func sample() -> SystemCPU? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        // user nice system idle iowait irq softirq steal ...
        let ticks = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard ticks.count >= 8 else { return nil }
        let busy = ticks.enumerated().filter { $0.offset != 3 && $0.offset != 4 && $0.offset < 8 }.reduce(0) { $0 + $1.element }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        var processes: [Int32: (name: String, cpuSeconds: Double)] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let text = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { continue }
            let name = String(text[text.index(after: open)..<close])
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { continue }
            processes[pid] = (name, (utime + stime) / hz)
        }
        return SystemCPU(busySeconds: busy / hz, stealSeconds: ticks[7] / hz, processes: processes)
    }

    /// The processes, other than `excluded`, that used the most CPU between `start` and now.
    static func busiestOthers(since start: SystemCPU?, excluding excluded: Set<Int32>, count: Int = 5) -> [String] {
        guard let now = sample() else { return [] }
        var used: [(String, Double)] = []
        for (pid, process) in now.processes where !excluded.contains(pid) {
            let before = start?.processes[pid]?.cpuSeconds ?? 0
            let delta = process.cpuSeconds - before
            if delta >= 0.5 { used.append((process.name, delta)) }
        }
        return used.sorted { $0.1 > $1.1 }.prefix(count).map { String(format: "%@ %.1f s", $0.0, $0.1) }
    }
}
