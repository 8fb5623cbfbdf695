#if os(Linux)  // The child is this test binary, found through /proc/self/exe.
import ArbiterCore
import ArbiterStorage
import Foundation
import GRDB
import Testing

/// The environment variable that turns this test binary into the crashing child (its value is the
/// directory to write in).
private let childVariable = "ARBITER_STORAGE_CRASH_CHILD"
private let coordinatorID = CoordinatorID("http://coordinator:8080")
private let bank = ParticipantID("http://bank:8081")

/// Kills a process that is writing with SIGKILL, then checks that every write it reported as
/// returned is in the reopened databases and that they are intact.
///
/// A killed process keeps what it handed to the kernel, so this checks SQLite's WAL recovery under
/// our batching and the promise that a returned write is committed; it cannot check that a forced
/// write reached the disk (that would take a power cut, or a file system that drops unsynced data).
@Suite("Crash")
struct CrashTests {
    @Test("after SIGKILL mid-write, every reported record is recovered and locks are intact", arguments: [150, 400])
    func killedWriter(delayMilliseconds: Int) async throws {
        try await withTemporaryDirectory { directory in
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            child.arguments = ["--testing-library", "swift-testing", "--filter", "CrashChild"]
            child.environment = ProcessInfo.processInfo.environment.merging([childVariable: directory]) { $1 }
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()

            // Let it write for a while, at least until it has reported something.
            let deadline = ContinuousClock.now + .seconds(60)
            try await Task.sleep(for: .milliseconds(delayMilliseconds))
            while (try? String(contentsOfFile: "\(directory)/reported", encoding: .utf8))?.count ?? 0 < 200
                    && ContinuousClock.now < deadline && child.isRunning {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(child.isRunning, "the child stopped before it was killed")
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()

            let reported = try String(contentsOfFile: "\(directory)/reported", encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: true)
                .map { $0.split(separator: " ").map(String.init) }
                .filter { $0.count == 2 }  // the last line may be cut short
            #expect(reported.count >= 10)

            let log = try DecisionLog(path: "\(directory)/coordinator.sqlite", options: testOptions())
            let store = try ParticipantStore(path: "\(directory)/participant.sqlite", options: testOptions())
            for database in [log.writer, store.writer] {
                let integrity = try await database.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
                #expect(integrity == ["ok"])
            }
            for line in reported {
                let txid = try TxID(line[1])
                switch line[0] {
                case "decided":
                    let state = try await log.transaction(txid)?.state
                    #expect(state == .committing || state == .committed, "\(txid): \(String(describing: state))")
                case "ended":
                    #expect(try await log.transaction(txid)?.state == .committed, "\(txid)")
                case "prepared":
                    let transaction = try await store.transaction(txid)
                    #expect(transaction?.state == .prepared || transaction?.state == .committed, "\(txid)")
                    if transaction?.state == .prepared {
                        #expect(try await store.locks(of: txid) == ["key:\(txid)"])
                    }
                case "committed":
                    #expect(try await store.transaction(txid)?.state == .committed, "\(txid)")
                    #expect(try await store.locks(of: txid).isEmpty)
                default:
                    Issue.record("unexpected line \(line)")
                }
            }
            try await log.close()
            try await store.close()
        }
    }
}

/// The child side of ``CrashTests``: writes until it is killed (or for 60 seconds), appending a line
/// to `reported` after each write returns. Runs only when the parent sets the variable.
@Suite("CrashChild", .enabled(if: ProcessInfo.processInfo.environment[childVariable] != nil))
struct CrashChild {
    @Test("write until killed")
    func writeUntilKilled() async throws {
        let directory = try #require(ProcessInfo.processInfo.environment[childVariable])
        let report = open("\(directory)/reported", O_CREAT | O_WRONLY | O_APPEND, 0o600)
        defer { close(report) }
        @Sendable func reportLine(_ line: String) {
            // One write(2) per line, unbuffered: what is reported is what returned, nothing more.
            _ = (line + "\n").utf8CString.withUnsafeBufferPointer { write(report, $0.baseAddress, $0.count - 1) }
        }
        let log = try DecisionLog(path: "\(directory)/coordinator.sqlite", options: testOptions())
        let store = try ParticipantStore(path: "\(directory)/participant.sqlite", options: testOptions())
        let deadline = ContinuousClock.now + .seconds(60)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    var index = 0
                    while ContinuousClock.now < deadline {
                        index += 1
                        let txid = try TxID("w\(worker)-\(index)")
                        try await log.append([.begun(txid, branches: [Branch(participant: bank, payload: Payload("{}"))])], durability: .lazy)
                        try await log.append([.decided(txid, .committed, notify: [bank], reason: nil)], durability: .forced)
                        reportLine("decided \(txid)")
                        try await store.write(.forced) { db in
                            _ = try store.lock("key:\(txid)", for: txid, in: db)
                            try store.apply(.prepared(txid, coordinator: coordinatorID, payload: Payload("{}")), in: db)
                        }
                        reportLine("prepared \(txid)")
                        if index % 2 == 0 {
                            try await store.write(.forced) { db in try store.apply(.committed(txid, heuristic: false), in: db) }
                            reportLine("committed \(txid)")
                            try await log.append([.acknowledged(txid, bank), .ended(txid)], durability: .lazy)
                            reportLine("ended \(txid)")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
#endif
