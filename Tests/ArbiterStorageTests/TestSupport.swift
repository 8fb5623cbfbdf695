import ArbiterCore
import ArbiterStorage
import Foundation
import GRDB
import Synchronization
import Logging
import Testing

/// Runs `body` with a fresh temporary directory, removed afterwards whatever happens.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("arbiter-storage-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try await body(directory)
}

/// A transaction id for tests (they only use valid literals).
func tx(_ text: String) -> TxID {
    try! TxID(text)
}

/// A clock that tests set by hand, for the records' times.
final class TestClock: Sendable {
    private let current: Mutex<Date>

    init(_ date: Date = Date(timeIntervalSince1970: 1_700_000_000)) {
        current = Mutex(date)
    }

    var now: @Sendable () -> Date {
        { self.current.withLock { $0 } }
    }

    func advance(by seconds: TimeInterval) {
        current.withLock { $0 += seconds }
    }
}

/// A flag shared between a write closure and the test.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// What a thread of the test's own saw go wrong, for the test to report.
final class FailureNote: Sendable {
    private let value = Mutex<String?>(nil)
    func set(_ text: String) { value.withLock { $0 = text } }
    var text: String? { value.withLock { $0 } }
}

/// Writer options for tests: the defaults, with a logger that stays quiet unless something fails.
func testOptions() -> StoreWriter.Options {
    var logger = Logger(label: "arbiter.storage.tests")
    logger.logLevel = .error
    return StoreWriter.Options(logger: logger)
}
