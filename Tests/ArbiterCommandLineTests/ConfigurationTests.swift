import ArbiterCommandLine
import ArbiterTesting
import Foundation
import Testing

@Suite("Configuration sources")
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
}
