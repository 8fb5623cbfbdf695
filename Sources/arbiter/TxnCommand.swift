import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArgumentParser
import AsyncHTTPClient
import Foundation

/// `arbiter txn`: operators read and steer a running coordinator's transactions.
struct TxnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn",
        abstract: "Inspect a coordinator's transactions; resend a decision now; read the operator audit trail.",
        subcommands: [List.self, Show.self, Retry.self, Audit.self]
    )

    struct Connection: ParsableArguments {
        @Option(help: "The coordinator's URL; for a cluster, several, comma-separated (the next is asked when one does not answer).")
        var coordinator: String = "http://127.0.0.1:7000"

        var coordinators: [String] {
            coordinator.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }

        func validate() throws {
            guard !coordinators.isEmpty else { throw ValidationError("--coordinator needs a URL") }
        }

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

        @Flag(help: "Only transactions not ended (undecided, or owed an acknowledgement), oldest first, with who owes them.")
        var stuck = false

        @Option(help: "With --stuck: only those first recorded at least this many milliseconds ago.")
        var olderThanMs: Int64 = 0

        @Flag(help: "Print the coordinator's JSON answer, for scripts.")
        var json = false

        func run() async throws {
            if stuck {
                guard state == nil, after == nil else { throw ValidationError("--stuck lists open transactions; it takes no --state or --after") }
                let secret = try readPresentedToken(operatorSecretFile, option: "--operator-secret-file")
                try await withClient(connection, secret: secret, operatorSecret: secret) { client in
                    let list = try await client.stuck(olderThanMs: olderThanMs, limit: limit)
                    if json { return try printJSON(list) }
                    print(pad("ID", 40), pad("STATE", 11), pad("AGE", 10), pad("AWAITING", 16), "OWED BY")
                    for transaction in list.transactions {
                        print(pad(transaction.id, 40), pad(transaction.state.rawValue, 11), pad("\(transaction.ageMs) ms", 10),
                              pad(transaction.awaiting, 16), transaction.owing.joined(separator: ", "))
                    }
                }
                return
            }
            let state = try state.map { name -> TransactionState in
                guard let state = TransactionState(rawValue: name) else {
                    throw ValidationError("unknown --state \(name); use preparing, committing, aborting, committed or aborted")
                }
                return state
            }
            let secret = try readPresentedToken(operatorSecretFile, option: "--operator-secret-file")
            try await withClient(connection, secret: secret, operatorSecret: secret) { client in
                let page = try await client.list(state: state, limit: limit, after: after)
                if json { return try printJSON(page) }
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

        @Flag(help: "Print the coordinator's JSON answer, for scripts.")
        var json = false

        func run() async throws {
            let txid: TxID
            do { txid = try TxID(id) } catch { throw ValidationError("\(error)") }
            let secret = try readPresentedToken(secretFile, option: "--secret-file")
            try await withClient(connection, secret: secret, operatorSecret: nil) { client in
                let view = try await client.transaction(txid)
                if json { return try printJSON(view) }
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

extension TxnCommand {
    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resend a decided transaction's decision now to the participants that have not acknowledged it (audited).")

        @OptionGroup var connection: Connection

        @Option(help: "File holding the operator token.")
        var operatorSecretFile: String

        @Option(help: "Why (kept in the coordinator's audit trail with your token's name).")
        var reason: String

        @Flag(help: "Print the coordinator's JSON answer, for scripts.")
        var json = false

        @Argument(help: "The transaction id.")
        var id: String

        func run() async throws {
            let txid: TxID
            do { txid = try TxID(id) } catch { throw ValidationError("\(error)") }
            let secret = try readPresentedToken(operatorSecretFile, option: "--operator-secret-file")
            try await withClient(connection, secret: secret, operatorSecret: secret) { client in
                let response = try await client.retryPhaseTwo(txid, reason: reason)
                if json { return try printJSON(response) }
                print("resent the decision of \(response.id) to \(response.resentTo.joined(separator: ", ")) (audit entry \(response.auditId))")
            }
        }
    }

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the operator actions taken at the coordinator, newest first.")

        @OptionGroup var connection: Connection

        @Option(help: "File holding the operator token.")
        var operatorSecretFile: String

        @Option(help: "How many to show (1–1000).")
        var limit: Int = 100

        @Option(help: "Only entries older than this entry id.")
        var before: Int64?

        @Flag(help: "Print the coordinator's JSON answer, for scripts.")
        var json = false

        func run() async throws {
            let secret = try readPresentedToken(operatorSecretFile, option: "--operator-secret-file")
            try await withClient(connection, secret: secret, operatorSecret: secret) { client in
                let trail = try await client.operatorAudit(limit: limit, before: before)
                if json { return try printJSON(trail) }
                print(pad("ID", 6), pad("AT", 25), pad("ACTOR", 14), pad("ACTION", 8), pad("TRANSACTION", 40), "REASON → RESULT")
                for entry in trail.entries {
                    print(pad(String(entry.id), 6), pad(entry.at, 25), pad(entry.actor, 14), pad(entry.action, 8), pad(entry.txid, 40),
                          "\(entry.reason) → \(entry.result ?? "(no result: the coordinator stopped while it ran)")")
                }
            }
        }
    }
}

/// Prints `value` as the coordinator sent it, one JSON document.
private func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

private func withClient(
    _ connection: TxnCommand.Connection, secret: BearerSecret, operatorSecret: BearerSecret?,
    _ body: (ArbiterClient) async throws -> Void
) async throws {
    let httpClient = HTTPClientSettings().makeClient(tls: try connection.tls.clientTLS())
    let client = ArbiterClient(coordinators: connection.coordinators, secret: secret, operatorSecret: operatorSecret, httpClient: httpClient)
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
