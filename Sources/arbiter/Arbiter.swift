import ArbiterCommandLine
import ArbiterCore
import ArgumentParser
import Foundation

/// The `arbiter` command-line tool.
@main
struct Arbiter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "arbiter",
        abstract: "Arbiter: a two-phase-commit transaction coordinator.",
        version: ArbiterRelease.version,
        subcommands: [CoordinatorCommand.self, TxnCommand.self, ParticipantCommand.self, Simulate.self]
    )

    /// Parses the command line; `arbiter coordinator` first takes the options its command line does
    /// not give from the environment and the configuration file (see ``ConfigurationSources``).
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == CoordinatorCommand.configuration.commandName {
            let sources = ConfigurationSources(help: CoordinatorCommand.helpMessage(columns: 1000))
            do {
                arguments = [arguments[0]] + (try await sources.arguments(Array(arguments.dropFirst())))
            } catch {
                exitWithRuntimeError(error)
            }
        }
        await main(arguments)
    }
}
