public import Foundation

/// Settings from three sources, for a command whose options are parsed by ArgumentParser:
/// command-line flags win over environment variables (`ARBITER_` + the option's name in capitals,
/// `-` as `_`: `--secret-file` is `ARBITER_SECRET_FILE`), which win over a configuration file
/// (`--config FILE`, or `ARBITER_CONFIG`).
///
/// It works on the arguments before parsing: each option the command line does not give is
/// appended with its value from the environment or, failing that, the file. ArgumentParser then
/// parses the result as usual, so one set of checks and one help text serve every source, and a
/// value from any source is validated alike.
///
/// The file is a JSON object (`{"port": 7001, "secret-file": "/etc/arbiter/secret"}`) or lines of
/// `name = value` (`#` starts a comment line). Keys are option names without the dashes; a flag
/// takes `true` or `false`. An unknown key is an error: a misspelt setting must not be silently
/// ignored. Unknown `ARBITER_` variables are ignored (the environment is shared with other tools).
public struct ConfigurationSources: Sendable {
    /// One option of the command.
    public struct Option: Hashable, Sendable {
        /// Its name without the leading dashes, as on the command line: `secret-file`.
        public var name: String
        /// Whether it takes a value (`--port 7000`) or is a flag (`--allow-any-participant`).
        public var takesValue: Bool

        public init(name: String, takesValue: Bool) {
            self.name = name
            self.takesValue = takesValue
        }

        /// The environment variable that sets it: `ARBITER_SECRET_FILE`.
        public var environmentName: String {
            ConfigurationSources.environmentPrefix + name.uppercased().replacingOccurrences(of: "-", with: "_")
        }
    }

    /// A setting that cannot be used: an unreadable or malformed file, an unknown key, a flag's
    /// value that is neither true nor false. Printed as an error; the command exits 1.
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// The prefix of the environment variables.
    public static let environmentPrefix = "ARBITER_"
    /// The option that names the configuration file.
    public static let configOption = "config"

    /// The command's options.
    public var options: [Option]

    public init(options: [Option]) { self.options = options }

    /// The options a command's help text lists (`--name <value>` or `--name`), without `--help`,
    /// `--version` and `--config`.
    public init(help: String) {
        var found: [Option] = []
        var seen: Set<String> = []
        for line in help.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " }
            // Option lines start with the option (`-h, --help` lists a short name first).
            guard trimmed.hasPrefix("--") || trimmed.hasPrefix("-h") else { continue }
            let words = trimmed.split(separator: " ", omittingEmptySubsequences: true)
            guard let index = words.firstIndex(where: { $0.hasPrefix("--") }) else { continue }
            let name = String(words[index].dropFirst(2).prefix { $0 != "," && $0 != "=" })
            guard !name.isEmpty, !["help", "version", Self.configOption].contains(name), seen.insert(name).inserted else { continue }
            let takesValue = index + 1 < words.count && words[index + 1].hasPrefix("<")
            found.append(Option(name: name, takesValue: takesValue))
        }
        self.options = found
    }

    /// The arguments to parse: `arguments` with every option they do not give appended from
    /// `environment` or the configuration file.
    public func arguments(
        _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(Problem) -> [String] {
        let given = Set(arguments.compactMap { argument -> String? in
            guard argument.hasPrefix("--") else { return nil }
            return String(argument.dropFirst(2).prefix { $0 != "=" })
        })
        let file = try fileSettings(path: Self.configPath(in: arguments) ?? environment[Self.environmentPrefix + "CONFIG"])
        var result = arguments
        for option in options where !given.contains(option.name) {
            let value: String
            let source: String
            if let fromEnvironment = environment[option.environmentName] {
                (value, source) = (fromEnvironment, option.environmentName)
            } else if let fromFile = file[option.name] {
                (value, source) = (fromFile, "the configuration file's `\(option.name)`")
            } else {
                continue
            }
            if option.takesValue {
                result.append("--\(option.name)=\(value)")
            } else {
                switch value.lowercased() {
                case "true", "1", "yes": result.append("--\(option.name)")
                case "false", "0", "no", "": break
                default: throw Problem("\(source) is `\(value)`; the flag --\(option.name) takes true or false")
                }
            }
        }
        return result
    }

    /// The value of `--config FILE` or `--config=FILE`.
    static func configPath(in arguments: [String]) -> String? {
        for (index, argument) in arguments.enumerated() {
            if argument == "--" + configOption { return index + 1 < arguments.count ? arguments[index + 1] : nil }
            if argument.hasPrefix("--\(configOption)=") { return String(argument.dropFirst(configOption.count + 3)) }
        }
        return nil
    }

    /// The file's settings by option name; empty without a file.
    func fileSettings(path: String?) throws(Problem) -> [String: String] {
        guard let path else { return [:] }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Problem("cannot read the configuration file \(path): \(error.localizedDescription)")
        }
        let settings = try text.drop(while: \.isWhitespace).hasPrefix("{") ? Self.jsonSettings(text, path: path) : Self.lineSettings(text, path: path)
        let known = Set(options.map(\.name))
        if let unknown = settings.keys.sorted().first(where: { !known.contains($0) }) {
            throw Problem("the configuration file \(path) sets `\(unknown)`, which is not an option of this command")
        }
        return settings
    }

    private static func jsonSettings(_ text: String, path: String) throws(Problem) -> [String: String] {
        do {
            return try JSONDecoder().decode([String: Scalar].self, from: Data(text.utf8)).mapValues(\.text)
        } catch {
            throw Problem("the configuration file \(path) is not a JSON object of strings, numbers and booleans: \(error)")
        }
    }

    /// A JSON value of the file: a string, a number or a boolean, as its command-line text.
    private struct Scalar: Decodable {
        var text: String
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let value = try? container.decode(Bool.self) {
                text = value ? "true" : "false"
            } else if let value = try? container.decode(Int.self) {
                text = String(value)
            } else if let value = try? container.decode(Double.self) {
                text = String(value)
            } else {
                text = try container.decode(String.self)
            }
        }
    }

    private static func lineSettings(_ text: String, path: String) throws(Problem) -> [String: String] {
        var settings: [String: String] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw Problem("\(path):\(number + 1): expected `name = value`")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            settings[key] = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return settings
    }
}

/// A problem found while a command runs, not in its command line's form (an unreadable secret file,
/// a registry with an error): printed as `Error: …` without the usage, exit status 1. ArgumentParser
/// gives a `ValidationError` the usage and status 64, which is for mistakes in the arguments.
public struct RuntimeError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Prints `error` as `Error: …` on standard error and exits 1.
public func exitWithRuntimeError(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
    exit(1)
}
