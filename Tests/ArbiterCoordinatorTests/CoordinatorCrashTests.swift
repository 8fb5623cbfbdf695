import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import AsyncHTTPClient
import Foundation
import Synchronization
import Testing

/// A real `arbiter coordinator` process killed with SIGKILL in each state a transaction can be in,
/// then restarted: recovery must finish every transaction correctly.
/// A coordinator process with its data directory and secrets; restartable on the same port.
final class CoordinatorProcess: Sendable {
    let directory: String
    private let state = Mutex<(port: Int, process: ManagedProcess?)>((0, nil))

    init(directory: String) throws {
        self.directory = directory
        try "protocol-s3cret\n".write(toFile: directory + "/secret", atomically: true, encoding: .utf8)
        try "operator-s3cret\n".write(toFile: directory + "/operator-secret", atomically: true, encoding: .utf8)
    }

    var url: String { "http://127.0.0.1:\(state.withLock { $0.port })" }
    var process: ManagedProcess? { state.withLock { $0.process } }

    /// Starts the coordinator (on a system-chosen port the first time, the same port after).
    func start(failpoints: String? = nil) async throws {
        let port = state.withLock { $0.port }
        let process = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"), arguments: [
            "coordinator", "--data", directory + "/data", "--port", String(port),
            "--secret-file", directory + "/secret", "--operator-secret-file", directory + "/operator-secret",
            "--allow-any-participant", "--retry-initial-ms", "20", "--retry-max-ms", "200", "--log-level", "info",
        ], environment: failpoints.map { ["ARBITER_FAILPOINTS": $0] } ?? [:])
        state.withLock { $0.process = process }
        let bound = try await process.waitFor(#"arbiter coordinator listening on http://127\.0\.0\.1:(\d+)"#)
        state.withLock { $0.port = Int(bound)! }
    }

    func kill() { process?.kill() }
}

@Suite("Coordinator killed and restarted", .serialized)
struct CoordinatorCrashTests {
    func client(_ coordinator: CoordinatorProcess, _ http: HTTPClient) -> ArbiterClient {
        ArbiterClient(coordinator: coordinator.url, secret: TestSecrets.protocolSecret, operatorSecret: TestSecrets.operatorSecret,
                      httpClient: http, retry: RetryPolicy(attemptCountMax: 1))
    }

    func withHTTP<T: Sendable>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        let http = HTTPClientSettings().makeClient()
        do {
            let result = try await body(http)
            try await http.shutdown()
            return result
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    @Test("killed while undecided: the restart aborts it and tells the prepared participant")
    func killedUndecided() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant { _ in .hang })
        try await withParticipants([p0, p1]) { ids in
            let coordinator = try CoordinatorProcess(directory: directory.path)
            try await coordinator.start()
            try await withHTTP { http in
                let submitting = Task { try? await self.client(coordinator, http).submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("u-1")) }
                try await eventually("P0 prepared") { p0.state.prepared.contains(txid("u-1")) }
                coordinator.kill()
                _ = await submitting.value
                try await coordinator.start()
                try await eventually("P0 told to abort") { p0.state.aborted.contains(txid("u-1")) }
                try await eventually("the transaction ended aborted") {
                    let view = try await self.client(coordinator, http).transaction(txid("u-1"))
                    return view.state == .aborted && view.endedAt != nil
                }
                #expect(p0.state.committed.isEmpty && p1.state.committed.isEmpty)
            }
            coordinator.kill()
        }
    }

    @Test("killed after deciding commit, before every participant acknowledged: the restart resends commit")
    func killedCommittedNotEnded() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        p1.setAcceptsDecisions(false)
        try await withParticipants([p0, p1]) { ids in
            let coordinator = try CoordinatorProcess(directory: directory.path)
            try await coordinator.start()
            try await withHTTP { http in
                let result = try await self.client(coordinator, http).submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("cne-1"))
                #expect(result.outcome == .committed)
                try await eventually("P0 committed") { p0.state.committed.contains(txid("cne-1")) }
                #expect(try await self.client(coordinator, http).transaction(txid("cne-1")).state == .committing)
                coordinator.kill()
                p1.setAcceptsDecisions(true)
                try await coordinator.start()
                try await eventually("P1 committed after the restart") { p1.state.committed.contains(txid("cne-1")) }
                try await eventually("the transaction ended committed") {
                    let view = try await self.client(coordinator, http).transaction(txid("cne-1"))
                    return view.state == .committed && view.endedAt != nil
                }
                #expect(p0.state.aborted.isEmpty && p1.state.aborted.isEmpty)
            }
            coordinator.kill()
        }
    }

    @Test("killed after deciding abort, before every participant acknowledged: the restart resends abort")
    func killedAbortedNotEnded() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant { _ in .no("refused") })
        p0.setAcceptsDecisions(false)
        try await withParticipants([p0, p1]) { ids in
            let coordinator = try CoordinatorProcess(directory: directory.path)
            try await coordinator.start()
            try await withHTTP { http in
                let result = try await self.client(coordinator, http).submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("ane-1"))
                #expect(result.outcome == .aborted)
                try await eventually("the abort decision is in the log") {
                    try await self.client(coordinator, http).transaction(txid("ane-1")).state == .aborting
                }
                coordinator.kill()
                p0.setAcceptsDecisions(true)
                try await coordinator.start()
                try await eventually("P0 aborted after the restart") { p0.state.aborted.contains(txid("ane-1")) }
                try await eventually("the transaction ended aborted") {
                    let view = try await self.client(coordinator, http).transaction(txid("ane-1"))
                    return view.state == .aborted && view.endedAt != nil
                }
                #expect(p0.state.committed.isEmpty)
            }
            coordinator.kill()
        }
    }

    @Test("crashes the instant the commit decision is durable, before sending it: the restart commits")
    func crashRightAfterTheDecision() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            let coordinator = try CoordinatorProcess(directory: directory.path)
            try await coordinator.start(failpoints: "coordinator.after-decision-force=crash")
            try await withHTTP { http in
                let answer = try? await self.client(coordinator, http).submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("f-1"))
                #expect(answer == nil, "the client gets no answer: the process died before reporting")
                try await coordinator.process!.waitForExit()
                #expect(p0.state.committed.isEmpty && p1.state.committed.isEmpty, "nothing was sent before the crash")
                try await coordinator.start()
                try await eventually("both committed after the restart") {
                    p0.state.committed.contains(txid("f-1")) && p1.state.committed.contains(txid("f-1"))
                }
                // The client retries with the same id and learns the outcome from the log.
                let retried = try await self.client(coordinator, http).submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("f-1"))
                #expect(retried.outcome == .committed)
            }
            coordinator.kill()
        }
    }

    /// `arbiter coordinator` used to wait forever for a port it never got: its announcement waited
    /// on a service that had already stopped.
    @Test("a port in use: the coordinator says so and exits, it does not hang")
    func portInUse() async throws {
        let directory = try TemporaryDirectory()
        let first = try CoordinatorProcess(directory: directory.path)
        try await first.start()
        let port = String(first.url.split(separator: ":").last!)
        let second = try ManagedProcess(name: "second coordinator", executable: try builtProduct("arbiter"), arguments: [
            "coordinator", "--data", directory.path + "/data-2", "--port", port,
            "--secret-file", directory.path + "/secret", "--allow-any-participant", "--log-level", "warning",
        ])
        try await second.waitForExit(timeout: .seconds(60))
        #expect(second.exitStatus != 0)
        #expect(second.log.contains("Address already in use"), "\(second.log)")
        first.kill()
    }
}
