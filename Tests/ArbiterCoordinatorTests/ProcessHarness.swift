import Foundation
import Synchronization

/// A built executable of this package, found next to the test bundle.
func builtProduct(_ name: String) throws -> String {
    var candidates: [URL] = []
    if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
    candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(packageRoot.appendingPathComponent(".build/debug"))
    for directory in candidates {
        let path = directory.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw TestFailure("cannot find the built `\(name)` next to the tests (looked in \(candidates.map(\.path)))")
}

/// A child process on loopback whose standard error is watched for a line.
final class ChildProcess: Sendable {
    let process: Process
    private let output = OutputBuffer()

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        let output = self.output
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else { handle.readabilityHandler = nil; return }
            output.append(String(decoding: data, as: UTF8.self))
        }
        try process.run()
    }

    var log: String { output.text }
    var pid: Int32 { process.processIdentifier }

    /// Waits for a line matching `pattern` (a regular expression with one capture group) and
    /// returns the capture.
    func waitFor(_ pattern: String, timeout: Duration = .seconds(60)) async throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = log
            if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
               let range = Range(match.range(at: 1), in: text) {
                return String(text[range])
            }
            guard process.isRunning else { throw TestFailure("the process exited (\(process.terminationStatus)) before printing \(pattern):\n\(text)") }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("timed out waiting for \(pattern):\n\(log)")
    }

    /// SIGKILL: no flush, no cleanup.
    func kill() {
        guard process.isRunning else { return }
        Foundation.kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits for the process to exit by itself (a failpoint crash) for at most `timeout`.
    func waitForExit(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        guard !process.isRunning else { throw TestFailure("the process did not exit:\n\(log)") }
    }

    deinit { kill() }
}

final class OutputBuffer: Sendable {
    private let buffer = Mutex("")
    func append(_ text: String) { buffer.withLock { $0 += text } }
    var text: String { buffer.withLock { $0 } }
}

/// A coordinator process with its data directory and secrets; restartable on the same port.
final class CoordinatorProcess: Sendable {
    let directory: String
    let port: Mutex<Int> = Mutex(0)
    let current: Mutex<ChildProcess?> = Mutex(nil)

    init(directory: String) throws {
        self.directory = directory
        try "protocol-s3cret\n".write(toFile: directory + "/secret", atomically: true, encoding: .utf8)
        try "operator-s3cret\n".write(toFile: directory + "/operator-secret", atomically: true, encoding: .utf8)
    }

    var url: String { "http://127.0.0.1:\(port.withLock { $0 })" }
    var child: ChildProcess? { current.withLock { $0 } }

    /// Starts the coordinator (on a system-chosen port the first time, the same port after).
    func start(failpoints: String? = nil) async throws {
        let port = self.port.withLock { $0 }
        let child = try ChildProcess(try builtProduct("arbiter"), [
            "coordinator", "--data", directory + "/data", "--port", String(port),
            "--secret-file", directory + "/secret", "--operator-secret-file", directory + "/operator-secret",
            "--retry-initial-ms", "20", "--retry-max-ms", "200", "--log-level", "info",
        ], environment: failpoints.map { ["ARBITER_FAILPOINTS": $0] } ?? [:])
        current.withLock { $0 = child }
        let bound = try await child.waitFor(#"coordinator listening.*|address=127\.0\.0\.1:(\d+)"#)
        self.port.withLock { $0 = Int(bound)! }
    }

    func kill() { child?.kill() }
}
