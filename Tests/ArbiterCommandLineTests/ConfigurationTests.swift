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

    /// Writes `text` to the file `name` in `directory` and returns its path.
    static func write(_ text: String, to name: String, in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The problem `arguments` reports for `arguments` and `environment`, or nil when it reports none.
    static func problem(_ arguments: [String], environment: [String: String] = [:]) async -> ConfigurationSources.Problem? {
        do {
            _ = try await sources.arguments(arguments, environment: environment)
            return nil
        } catch {
            return error
        }
    }

    @Test("a flag wins over the environment, which wins over the file: JSON, YAML and name = value lines")
    func precedence() async throws {
        let directory = try TemporaryDirectory()
        let files = [
            try Self.write(
                #"{"port": 7001, "data": "/from/file", "secret-file": "/file/secret", "allow-any-participant": true}"#,
                to: "arbiter.json", in: directory),
            try Self.write(
                "# comment\nport = 7001\ndata = /from/file\nsecret-file=/file/secret\nallow-any-participant = true\n",
                to: "arbiter.conf", in: directory),
            try Self.write(
                "# comment\nport: 7001\ndata: /from/file\nsecret-file: /file/secret\nallow-any-participant: true\n",
                to: "arbiter.yaml", in: directory),
        ]
        for file in files {
            // The flag's port, the environment's data, the file's secret file and flag; an unknown
            // ARBITER_ variable is ignored.
            let all = try await Self.sources.arguments(
                ["--port", "7003", "--config", file],
                environment: ["ARBITER_PORT": "7002", "ARBITER_DATA": "/from/env", "ARBITER_UNRELATED": "x"])
            #expect(all == [
                "--port", "7003", "--config", file,
                "--data=/from/env", "--secret-file=/file/secret", "--allow-any-participant",
            ], "\(file)")
            // Without the flag, the environment's port; ARBITER_CONFIG names the file.
            let noFlag = try await Self.sources.arguments([], environment: ["ARBITER_PORT": "7002", "ARBITER_CONFIG": file])
            #expect(noFlag == [
                "--data=/from/file", "--port=7002", "--secret-file=/file/secret", "--allow-any-participant",
            ], "\(file)")
            // Without either, the file's port; `--config=FILE` names it too.
            let fileOnly = try await Self.sources.arguments(["--config=" + file], environment: [:])
            #expect(fileOnly == [
                "--config=" + file, "--data=/from/file", "--port=7001", "--secret-file=/file/secret", "--allow-any-participant",
            ], "\(file)")
        }
        // Without a file, only the environment.
        #expect(try await Self.sources.arguments(["--data", "/d"], environment: ["ARBITER_PORT": "7002"]) == ["--data", "/d", "--port=7002"])
        // A YAML file that holds nothing sets nothing.
        let empty = try Self.write("# nothing yet\n", to: "empty.yml", in: directory)
        #expect(try await Self.sources.arguments(["--config", empty], environment: [:]) == ["--config", empty])
    }

    @Test("a flag takes true or false (also 1/0, yes/no) from the environment and every kind of file")
    func flagValues() async throws {
        let directory = try TemporaryDirectory()
        for (text, set) in [("true", true), ("TRUE", true), ("1", true), ("yes", true), ("false", false), ("0", false), ("no", false), ("", false)] {
            let arguments = try await Self.sources.arguments([], environment: ["ARBITER_ALLOW_ANY_PARTICIPANT": text])
            #expect(arguments == (set ? ["--allow-any-participant"] : []), "\(text)")
        }
        for (name, text) in [
            ("off.json", #"{"allow-any-participant": false}"#), ("off-string.json", #"{"allow-any-participant": "false"}"#),
            ("off.yaml", "allow-any-participant: false\n"), ("off.conf", "allow-any-participant = false\n"),
        ] {
            let file = try Self.write(text, to: name, in: directory)
            #expect(try await Self.sources.arguments(["--config", file], environment: [:]) == ["--config", file], "\(name)")
        }
        let on = try Self.write(#"{"allow-any-participant": "yes"}"#, to: "on.json", in: directory)
        #expect(try await Self.sources.arguments(["--config", on], environment: [:]) == ["--config", on, "--allow-any-participant"])

        // Anything else is a problem that names where it came from.
        let fromEnvironment = await Self.problem([], environment: ["ARBITER_ALLOW_ANY_PARTICIPANT": "perhaps"])
        #expect(fromEnvironment?.description == "ARBITER_ALLOW_ANY_PARTICIPANT is `perhaps`; the flag --allow-any-participant takes true or false")
        let perhaps = try Self.write("allow-any-participant = perhaps\n", to: "perhaps.conf", in: directory)
        let fromFile = await Self.problem(["--config", perhaps])
        #expect(fromFile?.description == "the configuration file's `allow-any-participant` is `perhaps`; the flag --allow-any-participant takes true or false")
    }

    @Test("JSON numbers: an integer as written, another number as a decimal")
    func jsonNumbers() async throws {
        let directory = try TemporaryDirectory()
        let whole = try Self.write(#"{"port": 7.001e3, "data": 12}"#, to: "whole.json", in: directory)
        #expect(try await Self.sources.arguments(["--config", whole], environment: [:]) == ["--config", whole, "--data=12", "--port=7001"])
        let fraction = try Self.write(#"{"port": 7001.5}"#, to: "fraction.json", in: directory)
        #expect(try await Self.sources.arguments(["--config", fraction], environment: [:]) == ["--config", fraction, "--port=7001.5"])
    }

    @Test("an unknown key in any kind of file, a value that is not a scalar, an unreadable or malformed file: a problem that names it")
    func problems() async throws {
        let directory = try TemporaryDirectory()
        for (name, text) in [("unknown.json", #"{"port": 7001, "prot": 7001}"#), ("unknown.conf", "prot = 7001\n"), ("unknown.yaml", "prot: 7001\n")] {
            let file = try Self.write(text, to: name, in: directory)
            // Even when the environment gives every option.
            let problem = await Self.problem(["--config", file], environment: ["ARBITER_PROT": "7001"])
            #expect(problem?.description == "the configuration file \(file) sets `prot`, which is not an option of this command")
        }
        // A nested object is no option either.
        let nested = try Self.write(#"{"tls": {"cert": "/c"}}"#, to: "nested.json", in: directory)
        #expect(await Self.problem(["--config", nested])?.description.contains("sets `tls`") == true)

        let list = try Self.write(#"{"data": ["/a", "/b"]}"#, to: "list.json", in: directory)
        #expect(await Self.problem(["--config", list])?.description == "the configuration file's `data` is not a string, a number or a boolean")
        // ... unless the environment gives that option.
        #expect(try await Self.sources.arguments(["--config", list], environment: ["ARBITER_DATA": "/d"]) == ["--config", list, "--data=/d"])

        let missing = directory.path + "/missing.json"
        #expect(await Self.problem(["--config", missing])?.description.hasPrefix("cannot read the configuration file \(missing)") == true)
        let badJSON = try Self.write(#"{"port": "#, to: "bad.json", in: directory)
        #expect(await Self.problem(["--config", badJSON])?.description.hasPrefix("the configuration file \(badJSON) is not a JSON object") == true)
        let badYAML = try Self.write("- data\n- port\n", to: "bad.yaml", in: directory)
        #expect(await Self.problem(["--config", badYAML])?.description.hasPrefix("the configuration file \(badYAML) is not a YAML mapping") == true)
        let badLines = try Self.write("port = 7001\ndata /d\n", to: "bad.conf", in: directory)
        #expect(await Self.problem(["--config", badLines])?.description == "\(badLines):2: expected `name = value`")
    }
}
