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

/// Keeps `writer` busy inside one batch until `queuedCount` more writes are queued, while `body`
/// submits them; the queued writes are then committed together. This makes the composition of
/// batches deterministic, so tests can assert on it without depending on timing.
func holdingWriter<T: Sendable>(
    _ writer: GroupCommitWriter,
    untilQueued queuedCount: Int,
    _ body: @Sendable () async throws -> T
) async throws -> T {
    let entered = Flag()
    async let hold: Void = writer.write(.lazy) { _ in
        entered.set()
        let deadline = ContinuousClock.now + .seconds(30)
        while writer.statistics.queuedRequestCount < queuedCount && ContinuousClock.now < deadline {
            usleep(100)
        }
    }
    while !entered.isSet {
        try await Task.sleep(for: .milliseconds(1))
    }
    let result = try await body()
    try await hold
    return result
}

/// Writer options for tests: the defaults, with a logger that stays quiet unless something fails.
func testOptions(batchSizeMax: Int = 1024, queueLengthMax: Int = 65_536, commitsOnCallerWhenIdle: Bool = true) -> GroupCommitWriter.Options {
    var logger = Logger(label: "arbiter.storage.tests")
    logger.logLevel = .error
    return GroupCommitWriter.Options(batchSizeMax: batchSizeMax, queueLengthMax: queueLengthMax,
                                     commitsOnCallerWhenIdle: commitsOnCallerWhenIdle, logger: logger)
}
