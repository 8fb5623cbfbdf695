import ArbiterCore
@testable import ArbiterHTTP
import ArbiterTesting
import Foundation
import Testing

/// `arbiter txn list --stuck`, `txn retry`, `txn audit` and `--json`, run as the operator would,
/// against a coordinator with a transaction owed an acknowledgement.
@Suite("Operator CLI")
struct OperatorCLITests {
    @Test("txn list --stuck, txn retry, txn audit and txn show print what the coordinator answers, as JSON with --json")
    func stuckRetryAudit() async throws {
        let directory = try TemporaryDirectory()
        let tokenFile = directory.path + "/operator.token"
        try TestSecrets.operatorSecretText.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let (a, b) = (FakeParticipant(), FakeParticipant())
        b.setAcceptsDecisions(false)
        try await withParticipants([a, b]) { ids in
            try await withCoordinator(data: directory.path + "/data", config: OperatorLeverTests.slowRetry) { url, client, _ async throws in
                #expect(try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("cli-1")).outcome == .committed)
                try await eventually("only b owes an acknowledgement") {
                    try await client.stuck().transactions.first?.owing == [ids[1].rawValue]
                }
                let connection = ["--coordinator", url, "--operator-secret-file", tokenFile]

                let stuckJSON = try await arbiter(["txn", "list", "--stuck", "--json"] + connection)
                let stuck = try JSONDecoder().decode(StuckList.self, from: Data(stuckJSON.utf8))
                #expect(stuck.transactions.map(\.id) == ["cli-1"] && stuck.transactions[0].owing == [ids[1].rawValue])
                let stuckText = try await arbiter(["txn", "list", "--stuck", "--older-than-ms", "0"] + connection)
                #expect(stuckText.contains("cli-1") && stuckText.contains("acknowledgement") && stuckText.contains(ids[1].rawValue))
                #expect(try await arbiter(["txn", "list", "--stuck", "--older-than-ms", "3600000"] + connection).split(separator: "\n").count == 1)

                b.setAcceptsDecisions(true)
                let retryJSON = try await arbiter(["txn", "retry", "cli-1", "--reason", "b is back", "--json"] + connection)
                #expect(try JSONDecoder().decode(RetryResponse.self, from: Data(retryJSON.utf8)).resentTo == [ids[1].rawValue])
                try await eventually("the transaction ended") { try await client.transaction(txid("cli-1")).state == .committed }

                let audit = try JSONDecoder().decode(OperatorAuditTrail.self, from: Data(try await arbiter(["txn", "audit", "--json"] + connection).utf8))
                #expect(audit.entries.map(\.reason) == ["b is back"] && audit.entries[0].actor == "test-operator")
                #expect(try await arbiter(["txn", "audit"] + connection).contains("b is back → done: resent to"))

                let show = try await arbiter(["txn", "show", "cli-1", "--json", "--coordinator", url, "--secret-file", tokenFile])
                #expect(try JSONDecoder().decode(TransactionView.self, from: Data(show.utf8)).state == .committed)
                let list = try JSONDecoder().decode(TransactionPage.self, from: Data(try await arbiter(["txn", "list", "--json"] + connection).utf8))
                #expect(list.transactions.map(\.id) == ["cli-1"])
            }
        }
    }
}

/// Runs the built `arbiter` with `arguments`; returns its standard output, or throws with its
/// standard error when it fails. Killed (by its pid) after a minute.
private func arbiter(_ arguments: [String]) async throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try builtProduct("arbiter"))
    process.arguments = arguments
    let (output, errors) = (Pipe(), Pipe())
    process.standardOutput = output
    process.standardError = errors
    let finished = AsyncStream<Void>.makeStream()
    process.terminationHandler = { _ in finished.continuation.yield(); finished.continuation.finish() }
    try process.run()
    async let stdoutData = readToEnd(output.fileHandleForReading)
    async let stderrData = readToEnd(errors.fileHandleForReading)
    let watchdog = Task {
        try await Task.sleep(for: .seconds(60))
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
    for await _ in finished.stream {}
    watchdog.cancel()
    let (stdout, stderr) = await (stdoutData, stderrData)
    guard process.terminationStatus == 0 else {
        throw TestFailure("arbiter \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(String(decoding: stderr, as: UTF8.self))")
    }
    return String(decoding: stdout, as: UTF8.self)
}
