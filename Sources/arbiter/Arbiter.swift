import ArbiterCore
import ArgumentParser

/// The `arbiter` command-line tool.
@main
struct Arbiter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "arbiter",
        abstract: "Arbiter: a two-phase-commit transaction coordinator.",
        version: ArbiterRelease.version,
        subcommands: [CoordinatorCommand.self, TxnCommand.self, ParticipantCommand.self, Simulate.self]
    )
}
