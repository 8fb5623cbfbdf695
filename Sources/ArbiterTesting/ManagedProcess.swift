public import Foundation
import Synchronization

/// A child process whose output is captured and watched: the building block of every test, demo
/// and benchmark that runs real coordinator and participant processes.
///
/// Stopped by its process id: ``kill()`` is SIGKILL (no flush, no cleanup — a crash),
/// ``terminate(timeout:)`` is SIGTERM and a wait (a graceful shutdown). A process still running
/// when the object goes away is killed.
public final class ManagedProcess: Sendable {
    public let name: String
    private let process: Process
    private let output = OutputBuffer()

    /// Starts `executable` with `arguments`; `environment` is added to this process's. With
    /// `logFile`, everything the process writes is also appended to that file (created if missing),
    /// whole, for a post-mortem after the process is gone.
    public init(name: String, executable: String, arguments: [String], environment: [String: String] = [:], logFile: String? = nil) throws {
        self.name = name
        if let logFile {
            let descriptor = open(logFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            guard descriptor >= 0 else { throw HarnessError("cannot open \(logFile) for \(name)'s output (errno \(errno))") }
            output.copy(to: descriptor)
        }
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
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                output.closeCopy()
                return
            }
            output.append(String(decoding: data, as: UTF8.self))
            output.copy(data)
        }
        try process.run()
    }

    /// Everything the process wrote so far (standard output and error together; the last 1 MiB).
    public var log: String { output.text }
    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    /// The exit status, once it has exited.
    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }

    /// Waits until the output matches `pattern`, a regular expression with one capture group, and
    /// returns the capture (of the first match).
    public func waitFor(_ pattern: String, timeout: Duration = .seconds(60)) async throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = log
            if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
               let range = Range(match.range(at: 1), in: text) {
                return String(text[range])
            }
            guard process.isRunning else {
                throw HarnessError("\(name) exited (status \(process.terminationStatus)) before printing /\(pattern)/:\n\(text.suffix(4000))")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw HarnessError("\(name) did not print /\(pattern)/ within \(timeout):\n\(log.suffix(4000))")
    }

    /// SIGKILL, then waits for the process to be gone.
    public func kill() {
        guard process.isRunning else { return }
        Foundation.kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM, then waits at most `timeout` for a graceful exit before SIGKILL.
    public func terminate(timeout: Duration = .seconds(10)) async {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        kill()
    }

    /// Waits at most `timeout` for the process to exit by itself (a failpoint crash).
    public func waitForExit(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        guard !process.isRunning else { throw HarnessError("\(name) did not exit within \(timeout)") }
    }

    /// CPU seconds used so far (user + system), from `/proc`; `nil` where there is no `/proc`.
    public var cpuSeconds: Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command name: state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Peak resident memory in bytes (VmHWM), from `/proc`.
    public var peakResidentBytes: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kilobytes * 1024
    }

    deinit { kill() }
}

final class OutputBuffer: Sendable {
    private static let sizeMax = 1 << 20
    private let buffer = Mutex("")
    /// A file that gets a copy of everything (-1: none).
    private let copyDescriptor = Mutex<Int32>(-1)

    func copy(to descriptor: Int32) { copyDescriptor.withLock { $0 = descriptor } }

    func copy(_ data: Data) {
        copyDescriptor.withLock { descriptor in
            guard descriptor >= 0 else { return }
            data.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    guard written > 0 else { return }
                    offset += written
                }
            }
        }
    }

    func closeCopy() {
        copyDescriptor.withLock { descriptor in
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
        }
    }

    func append(_ text: String) {
        buffer.withLock { buffer in
            buffer += text
            if buffer.utf8.count > Self.sizeMax { buffer = String(buffer.suffix(Self.sizeMax / 2)) }
        }
    }

    var text: String { buffer.withLock { $0 } }
}

/// A failure of the harness itself (a process that would not start, a condition never met).
public struct HarnessError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
