import ArbiterCore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `bank-node` process, started from the binary built beside the test bundle.
final class BankProcess {
    let process: Process
    let url: String
    let logPath: String

    private init(process: Process, url: String, logPath: String) {
        self.process = process
        self.url = url
        self.logPath = logPath
    }

    /// The `bank-node` executable built with the tests (the test target depends on it).
    static func binaryPath() throws -> String {
        var directories: [URL] = [URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()]
        if let executable = Bundle.main.executableURL { directories.append(executable.deletingLastPathComponent()) }
        directories.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for directory in directories {
            let candidate = directory.appendingPathComponent("bank-node").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw BankProcessError(description:
            "bank-node was not found beside the test bundle (looked in \(directories.map(\.path))); build it first: swift build --product bank-node")
    }

    /// Starts `bank-node` over `directory/data` and waits until it prints its port.
    static func start(directory: String, coordinator: String, failpoints: String? = nil, run: Int) async throws -> BankProcess {
        let stdoutPath = "\(directory)/stdout-\(run).txt"
        let logPath = "\(directory)/stderr-\(run).txt"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try binaryPath())
        process.arguments = [
            "--data", "\(directory)/data", "--port", "0", "--coordinator", coordinator,
            "--secret-file", "\(directory)/secret", "--operator-secret-file", "\(directory)/operator-secret",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["ARBITER_FAILPOINTS"] = failpoints
        process.environment = environment
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()

        var url: String?
        do {
            try await eventually("bank-node prints its address") {
                let text = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
                guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("bank-node listening on ") }) else {
                    if !process.isRunning { throw BankProcessError(description: "bank-node exited: \(Self.tail(logPath))") }
                    return false
                }
                url = String(line.dropFirst("bank-node listening on ".count))
                return true
            }
        } catch {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw error
        }
        return BankProcess(process: process, url: url!, logPath: logPath)
    }

    /// Kills the process with SIGKILL and waits until it is gone.
    func kill9() async throws {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try await exited()
    }

    /// Asks the process to stop gracefully and waits until it is gone.
    func terminate() async throws -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        try await exited()
        return process.terminationStatus
    }

    /// Waits until the process has exited (by itself, or killed).
    func exited() async throws {
        // Generous: on a loaded machine a process can take long to reach the step that ends it.
        try await eventually("bank-node \(process.processIdentifier) exits", timeout: .seconds(120)) { !process.isRunning }
    }

    var log: String { Self.tail(logPath) }

    static func tail(_ path: String) -> String {
        String(((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").suffix(2000))
    }
}

struct BankProcessError: Error, CustomStringConvertible {
    var description: String
}

/// Real `bank-node` processes killed with SIGKILL at protocol steps, restarted, and finished by the
/// (fake) coordinator's answers.
@Suite("Bank node processes", .serialized)
struct BankProcessTests {
    static func prepareDebit(_ txid: String, amount: Int, coordinator: String) -> String {
        Wire.prepare(txid, coordinator: coordinator, payload: #"{"op":"debit","account":"alice","amount":\#(amount)}"#)
    }

    static func writeSecrets(in directory: String) throws {
        try TestSecrets.protocolText.write(toFile: "\(directory)/secret", atomically: true, encoding: .utf8)
        try TestSecrets.operatorText.write(toFile: "\(directory)/operator-secret", atomically: true, encoding: .utf8)
    }

    static func account(_ http: TestHTTP, _ process: BankProcess, _ id: String) async throws -> (balance: Int?, reserved: Int?) {
        let json = try await http.get(process.url + "/accounts/\(id)").json()
        return (json["balance"] as? Int, json["reserved"] as? Int)
    }

    @Test("killed right after voting yes: restarts with its lock and reservation, learns the commit by inquiry")
    func killedAfterVote() async throws {
        try await FakeCoordinator.with { coordinator, coordinatorURL in
            try await withTemporaryDirectory { directory in
                try Self.writeSecrets(in: directory)
                try await TestHTTP.with { http in
                    let first = try await BankProcess.start(directory: directory, coordinator: coordinatorURL, run: 1)
                    #expect(try await http.post(first.url + "/accounts", #"{"id":"alice","balance":1000}"#).status == 201)
                    let vote = try await http.post(first.url + "/v1/prepare", Self.prepareDebit("p-1", amount: 300, coordinator: coordinatorURL))
                    #expect(try vote.json()["vote"] as? String == "yes", "\(vote)")
                    try await first.kill9()
                    #expect(first.process.terminationReason == .uncaughtSignal)

                    let second = try await BankProcess.start(directory: directory, coordinator: coordinatorURL, run: 2)
                    do {
                        // Still in doubt: the reservation and the lock survived the crash.
                        let alice = try await Self.account(http, second, "alice")
                        #expect(alice.balance == 1000)
                        #expect(alice.reserved == 300)
                        let inDoubt = try await http.get(second.url + "/v1/operator/in-doubt", token: TestSecrets.operatorText).json()
                        let transactions = try #require(inDoubt["transactions"] as? [[String: Any]])
                        #expect(transactions.first?["txid"] as? String == "p-1")
                        #expect(transactions.first?["locks"] as? [String] == ["account:alice"])
                        let blocked = try await http.post(second.url + "/v1/prepare", Self.prepareDebit("p-2", amount: 1, coordinator: coordinatorURL))
                        #expect((try blocked.json()["reason"] as? String)?.contains("locked by transaction p-1") == true)
                        try await eventually("the restarted node asks the coordinator") { coordinator.inquiries(about: "p-1") >= 1 }

                        coordinator.answer("p-1", .committed)
                        try await eventually("the commit learned by inquiry is applied") {
                            try await Self.account(http, second, "alice") == (700, 0)
                        }
                        let ack = try await http.post(second.url + "/v1/commit", Wire.decision("p-1"))
                        #expect(try ack.json()["state"] as? String == "committed")
                        #expect(try await http.post(second.url + "/v1/prepare", Self.prepareDebit("p-3", amount: 700, coordinator: coordinatorURL)).json()["vote"] as? String == "yes")
                    } catch {
                        Issue.record("bank-node log: \(second.log)")
                        _ = try? await second.kill9()
                        throw error
                    }
                    #expect(try await second.terminate() == 0, "\(second.log)")
                }
            }
        }
    }

    @Test("crashed by failpoint after forcing the prepared record, before voting: restarts in doubt, learns the abort")
    func crashedBeforeVote() async throws {
        try await FakeCoordinator.with { coordinator, coordinatorURL in
            try await withTemporaryDirectory { directory in
                try Self.writeSecrets(in: directory)
                try await TestHTTP.with { http in
                    let first = try await BankProcess.start(directory: directory, coordinator: coordinatorURL,
                        failpoints: "participant.after-prepare-force=crash", run: 1)
                    #expect(try await http.post(first.url + "/accounts", #"{"id":"alice","balance":1000}"#).status == 201)
                    // The process dies before it answers.
                    let vote = try? await http.post(first.url + "/v1/prepare", Self.prepareDebit("f-1", amount: 400, coordinator: coordinatorURL))
                    #expect(vote == nil)
                    try await first.exited()
                    #expect(first.process.terminationReason == .uncaughtSignal)

                    // The coordinator never got the vote, so it aborted (presumed abort).
                    coordinator.answer("f-1", .aborted)
                    let second = try await BankProcess.start(directory: directory, coordinator: coordinatorURL, run: 2)
                    do {
                        try await eventually("the abort learned by inquiry releases the reservation") {
                            try await Self.account(http, second, "alice") == (1000, 0)
                        }
                        let status = try await http.get(second.url + "/v1/operator/transactions/f-1", token: TestSecrets.operatorText).json()
                        #expect(status["state"] as? String == "aborted")
                        #expect(status["locks"] as? [String] == [])
                        // A resent prepare now votes no.
                        #expect(try await http.post(second.url + "/v1/prepare", Self.prepareDebit("f-1", amount: 400, coordinator: coordinatorURL)).json()["vote"] as? String == "no")
                    } catch {
                        Issue.record("bank-node log: \(second.log)")
                        _ = try? await second.kill9()
                        throw error
                    }
                    #expect(try await second.terminate() == 0, "\(second.log)")
                }
            }
        }
    }

    @Test("crashed by failpoint after the commit is durable, before acknowledging: the resent commit is acknowledged, applied once")
    func crashedBeforeAck() async throws {
        try await FakeCoordinator.with { coordinator, coordinatorURL in
            try await withTemporaryDirectory { directory in
                try Self.writeSecrets(in: directory)
                try await TestHTTP.with { http in
                    let first = try await BankProcess.start(directory: directory, coordinator: coordinatorURL,
                        failpoints: "participant.before-ack=crash", run: 1)
                    #expect(try await http.post(first.url + "/accounts", #"{"id":"alice","balance":1000}"#).status == 201)
                    #expect(try await http.post(first.url + "/v1/prepare", Self.prepareDebit("a-1", amount: 250, coordinator: coordinatorURL)).json()["vote"] as? String == "yes")
                    let ack = try? await http.post(first.url + "/v1/commit", Wire.decision("a-1"))
                    #expect(ack == nil)
                    try await first.exited()

                    coordinator.answer("a-1", .committed)
                    let second = try await BankProcess.start(directory: directory, coordinator: coordinatorURL, run: 2)
                    do {
                        #expect(try await Self.account(http, second, "alice") == (750, 0))
                        let resent = try await http.post(second.url + "/v1/commit", Wire.decision("a-1"))
                        #expect(try resent.json()["state"] as? String == "committed")
                        #expect(try await Self.account(http, second, "alice") == (750, 0))
                    } catch {
                        Issue.record("bank-node log: \(second.log)")
                        _ = try? await second.kill9()
                        throw error
                    }
                    #expect(try await second.terminate() == 0, "\(second.log)")
                }
            }
        }
    }
}
