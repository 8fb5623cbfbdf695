public import Foundation

/// Storage that cannot be written (a full disk, an I/O error): since when, and the first error.
///
/// A service holds one while its writes fail and drops it at the first write that succeeds; while
/// it holds one, its `GET /readyz` answers 503 and it refuses new work with `storage_unavailable`.
public struct StorageFault: Sendable, CustomStringConvertible {
    /// When the first write failed.
    public var since: Date
    /// The first failure, for people.
    public var message: String

    /// Makes a fault.
    public init(since: Date, message: String) {
        self.since = since
        self.message = message
    }

    public var description: String {
        "since \(since.formatted(.iso8601)): \(message)"
    }
}
