import Foundation

// A minimal launcher for the coordinator and the bank nodes, until the shared `BankCluster` target
// lands on main (then this file goes and the benchmark uses BankCluster instead).

/// A child process whose standard output and error go to a log file.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; it is only read after `run()` (pid, isRunning), and
    // stopped by pid.
    let name: String
    let process: Process
    let logPath: String

    init(name: String, executable: String, arguments: [String], logPath: String) throws {
        self.name = name
        self.logPath = logPath
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits, at most `timeout`, for a line of the log matching `pattern` (a regular expression with
    /// one capture group) and returns the capture.
    func waitForLine(_ pattern: String, timeout: Duration = .seconds(60)) async throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
               let range = Range(match.range(at: 1), in: text) {
                return String(text[range])
            }
            guard process.isRunning else {
                throw BenchError("\(name) exited (status \(process.terminationStatus)) before it listened; its log \(logPath):\n\(text.suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchError("\(name) did not listen within \(timeout); see \(logPath)")
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    func stop(grace: Duration = .seconds(10)) async {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// SIGKILL at once (used when the benchmark itself fails).
    func kill() {
        guard process.isRunning else { return }
        Foundation.kill(pid, SIGKILL)
        process.waitUntilExit()
    }
}

/// A coordinator and two bank nodes, each in its own data directory under `root`.
struct LocalCluster: Sendable {
    var coordinator: ChildProcess
    var nodes: [ChildProcess]
    var coordinatorURL: String
    var nodeURLs: [String]
    var secretPath: String

    /// The processes to measure, by role.
    var processes: [(role: String, process: ChildProcess)] {
        [("coordinator", coordinator)] + nodes.enumerated().map { ("bank-\(["a", "b"][$0.offset])", $0.element) }
    }

    static func start(binDirectory: String, root: String, nodeCount: Int = 2) async throws -> LocalCluster {
        let secretPath = root + "/secret"
        try (randomSecret() + "\n").write(toFile: secretPath, atomically: true, encoding: .utf8)
        let arbiter = binDirectory + "/arbiter"
        let bankNode = binDirectory + "/bank-node"
        for path in [arbiter, bankNode] where !FileManager.default.isExecutableFile(atPath: path) {
            throw BenchError("cannot find \(path); build it (`swift build -c release`) or give --bin-directory")
        }
        let coordinator = try ChildProcess(
            name: "coordinator", executable: arbiter,
            arguments: ["coordinator", "--data", root + "/coordinator", "--port", "0", "--secret-file", secretPath,
                        "--log-level", "info"],
            logPath: root + "/coordinator.log")
        var started: [ChildProcess] = [coordinator]
        do {
            let port = try await coordinator.waitForLine(#"coordinator listening.*address=127\.0\.0\.1:(\d+)"#)
            let coordinatorURL = "http://127.0.0.1:\(port)"
            var nodes: [ChildProcess] = []
            var nodeURLs: [String] = []
            for index in 0..<nodeCount {
                let name = "bank-\(["a", "b", "c", "d"][index % 4])"
                let node = try ChildProcess(
                    name: name, executable: bankNode,
                    arguments: ["--data", root + "/" + name, "--port", "0", "--coordinator", coordinatorURL,
                                "--secret-file", secretPath, "--log-level", "warning"],
                    logPath: root + "/\(name).log")
                started.append(node)
                nodes.append(node)
                nodeURLs.append(try await node.waitForLine(#"listening on (http://[0-9.]+:\d+)"#))
            }
            return LocalCluster(coordinator: coordinator, nodes: nodes, coordinatorURL: coordinatorURL,
                                nodeURLs: nodeURLs, secretPath: secretPath)
        } catch {
            for process in started { process.kill() }
            throw error
        }
    }

    func stop() async {
        for node in nodes { await node.stop() }
        await coordinator.stop()
    }

    func kill() {
        for process in [coordinator] + nodes { process.kill() }
    }
}

func randomSecret() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<4).map { _ in String(generator.next() as UInt64, radix: 16) }.joined()
}
