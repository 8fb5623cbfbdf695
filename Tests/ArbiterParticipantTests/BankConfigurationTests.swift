import ArbiterTesting
import Foundation
import Testing

/// `bank-node` as a process: settings from the environment and a file, runtime errors.
@Suite("Bank node configuration (process)", .serialized)
struct BankConfigurationTests {
    @Test("options from ARBITER_ variables and a name = value file; a flag wins over both")
    func sources() async throws {
        let directory = try ArbiterTesting.TemporaryDirectory()
        try "bank-s3cret-value\n".write(toFile: directory.path + "/secret", atomically: true, encoding: .utf8)
        let file = directory.path + "/bank.conf"
        try """
            # a bank
            data = \(directory.path)/data
            coordinator = http://127.0.0.1:1
            port = 70000
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(name: "bank-node", executable: try builtProduct("bank-node"),
            arguments: ["--port", "0", "--log-format", "json"],
            environment: ["ARBITER_CONFIG": file, "ARBITER_SECRET_FILE": directory.path + "/secret", "ARBITER_PORT": "70001"])
        _ = try await process.waitFor(#"bank-node listening on http://127\.0\.0\.1:(\d+)"#)
        await process.terminate()
        let logLines = process.log.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(!logLines.isEmpty)
        for line in logLines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "\(line)")
        }
    }

    @Test("a bad secret file is a runtime error: a message, no usage, exit status 1")
    func badSecretFile() async throws {
        let directory = try ArbiterTesting.TemporaryDirectory()
        let process = try ManagedProcess(name: "bank-node", executable: try builtProduct("bank-node"), arguments: [
            "--data", directory.path + "/data", "--port", "0", "--coordinator", "http://127.0.0.1:1",
            "--secret-file", directory.path + "/no-such-secret",
        ])
        try await process.waitForExit()
        #expect(process.exitStatus == 1)
        #expect(process.log.contains("Error: --secret-file"))
        #expect(!process.log.contains("USAGE"))
    }
}
