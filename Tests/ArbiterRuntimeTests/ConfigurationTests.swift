import ArbiterRuntime
import ArbiterTesting
import Foundation
import Logging
import Synchronization
import Testing

@Suite("Configuration sources and log format")
struct ConfigurationTests {
    static let help = """
        USAGE: tool coordinator --data <data> [--port <port>] [--allow-any-participant]

        OPTIONS:
          --config <config>       Configuration file.
          --data <data>           Directory.
          --port <port>           Port to listen on. (default: 7000)
          --secret-file <secret-file>
                                  File holding the secret.
          --allow-any-participant UNSAFE: talk to anyone.
          --version               Show the version.
          -h, --help              Show help information.
        """

    static let sources = ConfigurationSources(help: help)

    @Test("the options are read from the help text, flags told from options with values")
    func optionsFromHelp() {
        #expect(Self.sources.options == [
            .init(name: "data", takesValue: true), .init(name: "port", takesValue: true),
            .init(name: "secret-file", takesValue: true), .init(name: "allow-any-participant", takesValue: false),
        ])
        #expect(Self.sources.options[2].environmentName == "ARBITER_SECRET_FILE")
    }

    @Test("a flag wins over the environment, which wins over the file (JSON and name = value lines)")
    func precedence() throws {
        let directory = try TemporaryDirectory()
        let json = directory.path + "/arbiter.json"
        try #"{"port": 7001, "data": "/from/file", "secret-file": "/file/secret", "allow-any-participant": true}"#
            .write(toFile: json, atomically: true, encoding: .utf8)
        let lines = directory.path + "/arbiter.conf"
        try "# comment\nport = 7001\ndata = /from/file\nsecret-file=/file/secret\nallow-any-participant = true\n"
            .write(toFile: lines, atomically: true, encoding: .utf8)
        for file in [json, lines] {
            let arguments = try Self.sources.arguments(
                ["--port", "7003", "--config", file],
                environment: ["ARBITER_PORT": "7002", "ARBITER_DATA": "/from/env", "ARBITER_UNRELATED": "x"])
            #expect(arguments == [
                "--port", "7003", "--config", file,
                "--data=/from/env", "--secret-file=/file/secret", "--allow-any-participant",
            ])
            // Without the flag the environment's port; ARBITER_CONFIG names the file.
            let fromEnvironment = try Self.sources.arguments([], environment: ["ARBITER_PORT": "7002", "ARBITER_CONFIG": file])
            #expect(fromEnvironment.contains("--port=7002") && fromEnvironment.contains("--data=/from/file"))
        }
        #expect(try Self.sources.arguments(["--data", "/d"], environment: ["ARBITER_ALLOW_ANY_PARTICIPANT": "false"]) == ["--data", "/d"])
    }

    @Test("a bad file, an unknown key or a flag's bad value is a problem that names it")
    func problems() throws {
        let directory = try TemporaryDirectory()
        let unknown = directory.path + "/unknown.json"
        try #"{"prot": 7001}"#.write(toFile: unknown, atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationSources.Problem.self) { try Self.sources.arguments(["--config", unknown], environment: [:]) }
        do {
            _ = try Self.sources.arguments(["--config=" + unknown], environment: [:])
        } catch {
            #expect(error.description.contains("`prot`"))
        }
        #expect(throws: ConfigurationSources.Problem.self) {
            try Self.sources.arguments(["--config", directory.path + "/missing"], environment: [:])
        }
        #expect(throws: ConfigurationSources.Problem.self) {
            try Self.sources.arguments([], environment: ["ARBITER_ALLOW_ANY_PARTICIPANT": "perhaps"])
        }
    }

    @Test("JSON log lines parse, with time, level, label, message and metadata")
    func jsonLogLines() throws {
        let lines = LineCollector()
        var handler = JSONLogHandler(label: "arbiter.test") { lines.append($0) }
        handler.logLevel = .debug
        handler[metadataKey: "node"] = "a"
        let logger = Logger(label: "arbiter.test") { _ in handler }
        logger.info("quote \" and\nnewline", metadata: ["txid": "t-1", "list": ["x", "y"]])
        logger.debug("second")
        let collected = lines.lines
        #expect(collected.count == 2 && collected.allSatisfy { $0.hasSuffix("\n") && $0.dropLast().firstIndex(of: "\n") == nil })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(collected[0].utf8)) as? [String: Any])
        #expect(object["level"] as? String == "info")
        #expect(object["label"] as? String == "arbiter.test")
        #expect(object["message"] as? String == "quote \" and\nnewline")
        #expect((object["time"] as? String)?.hasSuffix("Z") == true)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["txid"] as? String == "t-1" && metadata["node"] as? String == "a")
        #expect(metadata["list"] as? [String] == ["x", "y"])
    }
}

final class LineCollector: Sendable {
    private let state = Mutex<[String]>([])
    func append(_ line: String) { state.withLock { $0.append(line) } }
    var lines: [String] { state.withLock { $0 } }
}
