public import Foundation
import Synchronization

/// A directory under the system's temporary directory, removed by ``remove()`` or when the
/// object goes away.
public final class TemporaryDirectory: Sendable {
    public let path: String
    private let kept = Mutex(false)

    public init(prefix: String = "arbiter") throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Keeps the directory when the object goes away (after a failure, for a post-mortem).
    public func keep() { kept.withLock { $0 = true } }

    deinit {
        if !kept.withLock({ $0 }) { remove() }
    }
}

/// Waits until `condition` holds, polling, for at most `timeout` (never a plain sleep).
///
/// The condition is checked once more after the deadline: a test task starved past it (a loaded
/// machine, Swift's few cooperative threads busy elsewhere) fails only if the condition still does
/// not hold, not because it woke up late.
public func eventually(
    _ what: String, timeout: Duration = .seconds(30), poll: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: poll)
    }
    if try await condition() { return }
    throw HarnessError("timed out after \(timeout) waiting until \(what)")
}

/// The path of an executable built by this package: next to the running executable (a demo or a
/// benchmark), next to the test bundle, or in `.build/debug`.
public func builtProduct(_ name: String, filePath: String = #filePath) throws -> String {
    var candidates: [URL] = []
    if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
    candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
    var root = URL(fileURLWithPath: filePath)
    while root.pathComponents.count > 1 && !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
        root.deleteLastPathComponent()
    }
    candidates.append(root.appendingPathComponent(".build/debug"))
    for directory in candidates {
        let path = directory.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw HarnessError("cannot find the built `\(name)` (looked in \(candidates.map(\.path).joined(separator: ", "))); run `swift build` first")
}

/// Stops the in-process servers running in `tasks` once their graceful shutdown has been triggered:
/// waits for them at most `timeout`, then cancels what is left.
///
/// Servers in tests stop by graceful shutdown, never by cancelling their tasks first: a server
/// task cancelled while a connection is being accepted drops that connection unserved, and NIO
/// traps on it in debug builds ("Deinited NIOAsyncWriter without calling finish()",
/// apple/swift-nio#2637). Graceful shutdown closes the listening socket at once, so the
/// cancellation after `timeout` — for a handler that never answers, a silent participant say —
/// can no longer meet an accepted connection. Errors of the stopped tasks are dropped.
public func stopWithin(_ timeout: Duration, _ tasks: inout ThrowingTaskGroup<Void, any Error>) async {
    tasks.addTask { try await Task.sleep(for: timeout) }
    // Whichever ends first: the servers (their shutdown is done) or the deadline.
    _ = try? await tasks.next()
    tasks.cancelAll()
    while true {
        do {
            guard try await tasks.next() != nil else { return }
        } catch {
            continue
        }
    }
}

/// Everything `handle` yields until its end, read on a thread of its own: a read that blocks until
/// a child process exits must not hold one of the few threads of Swift's cooperative pool, on
/// which an in-process service the child talks to may be waiting to run.
public func readToEnd(_ handle: FileHandle) async -> Data {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: handle.readDataToEndOfFile()) }
    }
}
