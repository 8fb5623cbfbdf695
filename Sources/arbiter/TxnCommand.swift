import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArgumentParser
import AsyncHTTPClient

/// `arbiter txn`: operators read a running coordinator's transactions.
struct TxnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn",
        abstract: "Inspect a coordinator's transactions.",
        subcommands: [List.self, Show.self]
    )

    struct Connection: ParsableArguments {
        @Option(help: "The coordinator's URL.")
        var coordinator: String = "http://127.0.0.1:7000"

        @OptionGroup var tls: ClientTLSOptions
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List transactions, oldest first (needs the operator token).")

        @OptionGroup var connection: Connection

        @Option(help: "File holding the operator token.")
        var operatorSecretFile: String

        @Option(help: "Only this state: preparing, committing, aborting, committed, aborted.")
        var state: String?

        @Option(help: "How many to show (1–1000).")
        var limit: Int = 100

        @Option(help: "Continue after this cursor (the `next` a previous page printed).")
        var after: String?

        func run() async throws {
            let state = try state.map { name -> TransactionState in
                guard let state = TransactionState(rawValue: name) else {
                    throw ValidationError("unknown --state \(name); use preparing, committing, aborting, committed or aborted")
                }
                return state
            }
            let secret = try readPresentedToken(operatorSecretFile, option: "--operator-secret-file")
            try await withClient(connection, secret: secret, operatorSecret: secret) { client in
                let page = try await client.list(state: state, limit: limit, after: after)
                print(pad("ID", 40), pad("STATE", 11), pad("OUTCOME", 10), pad("CREATED", 25), "REASON")
                for transaction in page.transactions {
                    print(pad(transaction.id, 40), pad(transaction.state.rawValue, 11),
                          pad(transaction.outcome?.rawValue ?? "-", 10), pad(transaction.createdAt, 25), transaction.reason ?? "")
                }
                if let next = page.next { print("more: --after \(next)") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one transaction: state, branches, acknowledgements, times.")

        @OptionGroup var connection: Connection

        @Option(help: "File holding a client token (or an operator token; the first token of a token file).")
        var secretFile: String

        @Argument(help: "The transaction id.")
        var id: String

        func run() async throws {
            let txid: TxID
            do { txid = try TxID(id) } catch { throw ValidationError("\(error)") }
            let secret = try readPresentedToken(secretFile, option: "--secret-file")
            try await withClient(connection, secret: secret, operatorSecret: nil) { client in
                let view = try await client.transaction(txid)
                print("id:       \(view.id)")
                print("state:    \(view.state.rawValue)")
                print("outcome:  \(view.outcome?.rawValue ?? "-")\(view.reason.map { "  (\($0))" } ?? "")")
                print("created:  \(view.createdAt)")
                print("decided:  \(view.decidedAt ?? "-")")
                print("ended:    \(view.endedAt ?? "-")")
                for branch in view.branches {
                    let ack = branch.acknowledgement.map { "acknowledged \($0.rawValue)" } ?? "not acknowledged"
                    print("branch:   \(branch.participant)  \(ack)  payload \(String(decoding: branch.payload.bytes, as: UTF8.self))")
                }
            }
        }
    }
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

private func withClient(
    _ connection: TxnCommand.Connection, secret: BearerSecret, operatorSecret: BearerSecret?,
    _ body: (ArbiterClient) async throws -> Void
) async throws {
    let httpClient = HTTPClientSettings().makeClient(tls: try connection.tls.clientTLS())
    let client = ArbiterClient(coordinator: connection.coordinator, secret: secret, operatorSecret: operatorSecret, httpClient: httpClient)
    do {
        try await body(client)
    } catch let error as ArbiterClientError {
        try? await httpClient.shutdown()
        throw ValidationError(error.message)
    } catch {
        try? await httpClient.shutdown()
        throw error
    }
    try await httpClient.shutdown()
}
