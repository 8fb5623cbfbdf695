#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Named points in the services where a test can make the process crash, stall or fail.
///
/// Enabled by the environment: `ARBITER_FAILPOINTS=name=action,...` where action is `crash`
/// (the process is killed at once with SIGKILL: no flush, no cleanup, exactly like `kill -9`),
/// `delay(MS)` (the step stalls), or `error` (the step throws ``FailpointError``). An action may
/// end in `@N` to act on the N-th hit only (`coordinator.after-decision=crash@3`).
///
/// When the variable is unset every hit is a check of one empty dictionary.
public enum Failpoints {
    /// What a failpoint does when hit.
    public enum Action: Hashable, Sendable {
        case crash
        case delay(Duration)
        case error
    }

    struct Rule: Sendable {
        var action: Action
        var onHit: Int?
    }

    private static let rules: [String: Rule] = parse(
        ProcessInfoEnvironment.value(of: "ARBITER_FAILPOINTS") ?? "")
    private static let hits = HitCounter()

    /// Whether any failpoint is enabled in this process.
    public static var isEnabled: Bool { !rules.isEmpty }

    /// Acts on failpoint `name` if it is enabled: may kill the process, stall, or throw.
    public static func hit(_ name: String) async throws(FailpointError) {
        guard !rules.isEmpty, let rule = rules[name] else { return }
        let count = hits.increment(name)
        if let onHit = rule.onHit, onHit != count { return }
        switch rule.action {
        case .crash:
            crashNow(name)
        case .delay(let duration):
            try? await Task.sleep(for: duration)
        case .error:
            throw FailpointError(name: name)
        }
    }

    /// The synchronous form, for code that cannot suspend (inside a database transaction): a
    /// `delay` blocks the thread.
    public static func hitSync(_ name: String) throws(FailpointError) {
        guard !rules.isEmpty, let rule = rules[name] else { return }
        let count = hits.increment(name)
        if let onHit = rule.onHit, onHit != count { return }
        switch rule.action {
        case .crash:
            crashNow(name)
        case .delay(let duration):
            let (seconds, attoseconds) = duration.components
            usleep(UInt32(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        case .error:
            throw FailpointError(name: name)
        }
    }

    private static func crashNow(_ name: String) -> Never {
        let line = "failpoint \(name): crashing\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        kill(getpid(), SIGKILL)
        _exit(137)  // Not reached: SIGKILL cannot be caught.
    }

    /// Parses `name=action[@N],...`; malformed entries are ignored with a line on standard error,
    /// so that a typo in a test's environment is visible but never crashes a service.
    static func parse(_ text: String) -> [String: Rule] {
        var rules: [String: Rule] = [:]
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces() }
            guard parts.count == 2, !parts[0].isEmpty, let rule = parseRule(parts[1]) else {
                let line = "ARBITER_FAILPOINTS: ignoring malformed entry '\(entry)'\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
                continue
            }
            rules[parts[0]] = rule
        }
        return rules
    }

    private static func parseRule(_ text: String) -> Rule? {
        let pieces = text.split(separator: "@", maxSplits: 1).map(String.init)
        var onHit: Int?
        if pieces.count == 2 {
            guard let n = Int(pieces[1]), n > 0 else { return nil }
            onHit = n
        }
        let action = pieces[0]
        if action == "crash" { return Rule(action: .crash, onHit: onHit) }
        if action == "error" { return Rule(action: .error, onHit: onHit) }
        if action.hasPrefix("delay("), action.hasSuffix(")"),
           let ms = Int(action.dropFirst(6).dropLast()), ms >= 0 {
            return Rule(action: .delay(.milliseconds(ms)), onHit: onHit)
        }
        return nil
    }
}

/// A failpoint configured with `error` was hit.
public struct FailpointError: Error, Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var description: String { "failpoint \(name) injected an error" }
}

private extension Substring {
    func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

/// Reads one environment variable without Foundation.
enum ProcessInfoEnvironment {
    static func value(of name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }
}

import Synchronization

final class HitCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func increment(_ name: String) -> Int {
        counts.withLock { counts in
            counts[name, default: 0] += 1
            return counts[name]!
        }
    }
}
