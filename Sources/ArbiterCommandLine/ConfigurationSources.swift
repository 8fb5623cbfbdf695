import Configuration
public import Foundation
import Yams

/// Settings from three sources, for a command whose options are parsed by ArgumentParser:
/// command-line flags win over environment variables (`ARBITER_` + the option's name in capitals,
/// `-` as `_`: `--secret-file` is `ARBITER_SECRET_FILE`), which win over a configuration file
/// (`--config FILE`, or `ARBITER_CONFIG`).
///
/// It works on the arguments before parsing: each option the command line does not give is
/// appended with its value from a swift-configuration `ConfigReader` over the environment
/// (`EnvironmentVariablesProvider`, its keys prefixed with `arbiter`) and then the file. ArgumentParser
/// then parses the result as usual, so one set of checks and one help text serve every source, and
/// a value from any source is validated alike.
///
/// The file is YAML when its name ends in `.yaml` or `.yml` (`FileProvider<YAMLSnapshot>`), else a
/// JSON object when it starts with `{` (`FileProvider<JSONSnapshot>`), else lines of
/// `name = value` (`#` starts a comment line; an `InMemoryProvider` of strings). Keys are option
/// names without the dashes; a flag takes `true` or `false`. An unknown key is an error: a misspelt
/// setting must not be silently ignored. Unknown `ARBITER_` variables are ignored (the environment
/// is shared with other tools).
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

        /// The environment variable that sets it: `ARBITER_SECRET_FILE`. `EnvironmentVariablesProvider`
        /// finds it under the key `arbiter.secret-file` by the same rule.
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
    ) async throws(Problem) -> [String] {
        let given = Set(arguments.compactMap { argument -> String? in
            guard argument.hasPrefix("--") else { return nil }
            return String(argument.dropFirst(2).prefix { $0 != "=" })
        })
        let configPath = Self.configPath(in: arguments) ?? environment[Option(name: Self.configOption, takesValue: true).environmentName]
        let file = try await configurationFile(path: configPath)
        // In order of precedence: the reader answers with the first provider that has the key.
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: ["arbiter"])
        ]
        if let file { providers.append(file.provider) }
        let reader = ConfigReader(providers: providers)
        var result = arguments
        for option in options where !given.contains(option.name) {
            let inEnvironment = environment[option.environmentName] != nil
            let inFile = file?.keys.contains(option.name) ?? false
            let source = inEnvironment ? option.environmentName : "the configuration file's `\(option.name)`"
            guard let value = Self.text(of: option, in: reader, inFile: inFile) else {
                if inFile && !inEnvironment { throw Problem("\(source) is not a string, a number or a boolean") }
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

    /// The value of `option` as command-line text, or nil when no source gives it. The
    /// environment and `name = value` lines hold strings; JSON also holds numbers and booleans,
    /// which swift-configuration gives only as the type asked for, and converts between them (a
    /// boolean reads as 1 or 0 where a number is asked for, a number other than 0 as true where a
    /// boolean is). Only for a key the file holds is more than a string asked for.
    static func text(of option: Option, in reader: ConfigReader, inFile: Bool) -> String? {
        let key = ConfigKey([option.name])
        if let string = reader.string(forKey: key) { return string }
        guard inFile else { return nil }
        if !option.takesValue { return reader.bool(forKey: key).map { $0 ? "true" : "false" } }
        if let int = reader.int(forKey: key) { return String(int) }
        return reader.double(forKey: key).map { String($0) }
    }

    /// The value of `--config FILE` or `--config=FILE`.
    static func configPath(in arguments: [String]) -> String? {
        for (index, argument) in arguments.enumerated() {
            if argument == "--" + configOption { return index + 1 < arguments.count ? arguments[index + 1] : nil }
            if argument.hasPrefix("--\(configOption)=") { return String(argument.dropFirst(configOption.count + 3)) }
        }
        return nil
    }

    /// The configuration file as a provider, with the keys it sets; nil without a file, or for a
    /// YAML file that holds nothing.
    ///
    /// swift-configuration cannot list a provider's keys, so the file's top-level keys are listed
    /// here, from the text read to choose its format, for the check that each is an option.
    func configurationFile(path: String?) async throws(Problem) -> (provider: any ConfigProvider, keys: Set<String>)? {
        guard let path else { return nil }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Problem("cannot read the configuration file \(path): \(error.localizedDescription)")
        }
        let file: (provider: any ConfigProvider, keys: Set<String>)
        if path.hasSuffix(".yaml") || path.hasSuffix(".yml") {
            do {
                guard let root = try Yams.compose(yaml: text) else { return nil }
                guard let mapping = root.mapping else { throw Problem("its top level is not a mapping") }
                file = (try await FileProvider<YAMLSnapshot>(filePath: .init(path)), Set(mapping.keys.compactMap(\.string)))
            } catch {
                throw Problem("the configuration file \(path) is not a YAML mapping of strings, numbers and booleans: \(error)")
            }
        } else if text.drop(while: \.isWhitespace).hasPrefix("{") {
            do {
                guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                    throw Problem("its top level is not an object")
                }
                file = (try await FileProvider<JSONSnapshot>(filePath: .init(path)), Set(object.keys))
            } catch {
                throw Problem("the configuration file \(path) is not a JSON object of strings, numbers and booleans: \(error)")
            }
        } else {
            let settings = try Self.lineSettings(text, path: path)
            let values = Dictionary(uniqueKeysWithValues: settings.map { name, value in
                (AbsoluteConfigKey([name]), ConfigValue(.string(value), isSecret: false))
            })
            file = (InMemoryProvider(name: path, values: values), Set(settings.keys))
        }
        let known = Set(options.map(\.name))
        if let unknown = file.keys.sorted().first(where: { !known.contains($0) }) {
            throw Problem("the configuration file \(path) sets `\(unknown)`, which is not an option of this command")
        }
        return file
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
