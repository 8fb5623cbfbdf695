import Foundation
import Testing

/// `arbiter coordinator` as a process: settings from flags, the environment and a file; runtime
/// errors; JSON log lines.
@Suite("Coordinator configuration (process)", .serialized)
struct ConfigurationProcessTests {
    static func writeSecret(in directory: String) throws {
        try "protocol-s3cret\n".write(toFile: directory + "/secret", atomically: true, encoding: .utf8)
    }

    @Test("the environment wins over the file, a flag over the environment")
    func precedence() async throws {
        let directory = try TemporaryDirectory()
        try Self.writeSecret(in: directory.path)
        // The file's port and the environment's, each used, would not start: only the winner does.
        let file = directory.path + "/arbiter.json"
        try """
            {"data": "\(directory.path)/data", "secret-file": "\(directory.path)/secret", "allow-any-participant": true, "port": 70000}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let accessLog = directory.path + "/access.log"
        let fromEnvironment = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"),
            arguments: ["coordinator", "--config", file], environment: ["ARBITER_PORT": "0", "CONFIG_ACCESS_LOG_FILE": accessLog])
        _ = try await fromEnvironment.waitFor(#"arbiter coordinator listening on http://127\.0\.0\.1:(\d+)"#)
        await fromEnvironment.terminate()
        // swift-configuration's access log names the source of each value read.
        let reads = try String(contentsOfFile: accessLog, encoding: .utf8).split(separator: "\n")
        #expect(reads.contains { $0.contains(#"port -> "0""#) && $0.contains("EnvironmentVariablesProvider") })
        #expect(reads.contains { $0.contains(#"data -> "\#(directory.path)/data""#) && $0.contains("FileProvider<JSONSnapshot>") })

        let fromFlag = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"),
            arguments: ["coordinator", "--port", "0"], environment: ["ARBITER_PORT": "70001", "ARBITER_CONFIG": file])
        _ = try await fromFlag.waitFor(#"arbiter coordinator listening on http://127\.0\.0\.1:(\d+)"#)
        await fromFlag.terminate()

        // And the losing value, alone, is refused as a usage error.
        let refused = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"),
            arguments: ["coordinator", "--config", file])
        try await refused.waitForExit()
        #expect(refused.exitStatus == 64)
        #expect(refused.log.contains("--port must be 0...65535, got 70000"))
    }

    @Test("a bad secret file is a runtime error: a message, no usage, exit status 1")
    func badSecretFile() async throws {
        let directory = try TemporaryDirectory()
        let process = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"), arguments: [
            "coordinator", "--data", directory.path + "/data", "--port", "0",
            "--secret-file", directory.path + "/no-such-secret", "--allow-any-participant",
        ])
        try await process.waitForExit()
        #expect(process.exitStatus == 1)
        #expect(process.log.contains("Error: --secret-file"))
        #expect(process.log.contains("no-such-secret"))
        #expect(!process.log.contains("USAGE"))
    }

    @Test("a bad configuration file is a runtime error too")
    func badConfigFile() async throws {
        let directory = try TemporaryDirectory()
        let file = directory.path + "/arbiter.conf"
        try "prot = 7000\n".write(toFile: file, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"),
            arguments: ["coordinator", "--config", file])
        try await process.waitForExit()
        #expect(process.exitStatus == 1)
        #expect(process.log.contains("`prot`"))
    }

    @Test("--log-format json writes one JSON object per log line")
    func jsonLogs() async throws {
        let directory = try TemporaryDirectory()
        try Self.writeSecret(in: directory.path)
        let process = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"), arguments: [
            "coordinator", "--data", directory.path + "/data", "--port", "0", "--secret-file", directory.path + "/secret",
            "--allow-any-participant", "--log-format", "json",
        ])
        _ = try await process.waitFor(#"arbiter coordinator listening on http://127\.0\.0\.1:(\d+)"#)
        await process.terminate()
        let lines = process.log.split(separator: "\n").filter { !$0.hasPrefix("arbiter coordinator ") }
        #expect(!lines.isEmpty, "the --allow-any-participant warning is logged")
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(object["time"] is String && object["level"] is String && object["label"] is String)
            #expect(object["message"] is String && object["metadata"] is [String: Any])
        }
        #expect(lines.contains { $0.contains(#""level":"warning""#) && $0.contains("--allow-any-participant") })
    }
}
