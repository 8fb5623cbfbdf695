import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
import ArgumentParser
import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// `arbiter participant`: operators look at a participant's in-doubt transactions and, as a last
/// resort, decide one by hand.
struct ParticipantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "participant",
        abstract: "Inspect a participant's in-doubt transactions; decide one heuristically (last resort).",
        subcommands: [InDoubt.self, Show.self, Decide.self, Audit.self]
    )

    struct Connection: ParsableArguments {
        @Option(help: "The participant's URL.")
        var participant: String

        @Option(help: "File holding the participant's operator token.")
        var operatorSecretFile: String

        @OptionGroup var tls: ClientTLSOptions
    }

    struct InDoubt: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "in-doubt", abstract: "List the transactions prepared here and waiting for their decision.")

        @OptionGroup var connection: Connection

        func run() async throws {
            let list = try await operatorCall(connection, .GET, "/v1/operator/in-doubt", as: InDoubtList.self)
            print(pad("TXID", 40), pad("PREPARED", 25), pad("COORDINATOR", 28), "LOCKS")
            for status in list.transactions {
                print(pad(status.txid, 40), pad(status.preparedAt ?? "-", 25), pad(status.coordinator ?? "-", 28),
                      status.locks.joined(separator: ","))
            }
            if list.transactions.isEmpty { print("(none)") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what the participant holds for one transaction.")

        @OptionGroup var connection: Connection

        @Argument(help: "The transaction id.")
        var txid: String

        func run() async throws {
            let id = try validTxID(txid)
            let status = try await operatorCall(connection, .GET, "/v1/operator/transactions/\(id.rawValue)", as: TransactionStatus.self)
            print("txid:        \(status.txid)")
            print("state:       \(status.state)\(status.heuristic ? "  (HEURISTIC: decided by an operator)" : "")")
            print("coordinator: \(status.coordinator ?? "-")")
            print("prepared:    \(status.preparedAt ?? "-")")
            print("ended:       \(status.endedAt ?? "-")")
            print("locks:       \(status.locks.isEmpty ? "-" : status.locks.joined(separator: ", "))")
        }
    }

    struct Decide: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decide an in-doubt transaction without its coordinator (recorded as heuristic).",
            discussion: """
                Use only when the coordinator is gone for good. If the coordinator decided otherwise, \
                this participant and the others will disagree: atomicity is broken for this \
                transaction, and the coordinator reports an anomaly. The decision is recorded as \
                heuristic and shown as such afterwards, and the participant's audit trail keeps who \
                decided, when and why (see `arbiter participant audit`). Requires --reason and \
                --i-understand-this-may-break-atomicity.
                """
        )

        @OptionGroup var connection: Connection

        @Argument(help: "The transaction id.")
        var txid: String

        @Option(help: "committed or aborted.")
        var outcome: String

        @Option(help: "Why you decide alone; kept in the participant's audit trail with your token's name.")
        var reason: String

        @Flag(help: "Confirm that you accept breaking atomicity if the coordinator decided otherwise.")
        var iUnderstandThisMayBreakAtomicity = false

        func run() async throws {
            let id = try validTxID(txid)
            guard let outcome = WireOutcome(rawValue: outcome) else { throw ValidationError("--outcome must be committed or aborted") }
            guard iUnderstandThisMayBreakAtomicity else {
                throw ValidationError("refusing without --i-understand-this-may-break-atomicity (see --help)")
            }
            let body = try WireJSON.encode(HeuristicDecisionRequest(outcome: outcome, iUnderstandThisMayBreakAtomicity: true, reason: reason))
            let status = try await operatorCall(connection, .POST, "/v1/operator/transactions/\(id.rawValue)/decide", body: body,
                                                as: TransactionStatus.self)
            print("\(status.txid) is now \(status.state)\(status.heuristic ? " (heuristic)" : "")")
        }
    }
}

extension ParticipantCommand {
    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the operators' actions at the participant, newest first: who, when, what, why, and the result.")

        @OptionGroup var connection: Connection

        @Option(help: "How many to show (1–1000).")
        var limit: Int = 100

        @Option(help: "Show entries older than this id (the last id of a previous page).")
        var before: Int64?

        func run() async throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1...1000") }
            var path = "/v1/operator/audit?limit=\(limit)"
            if let before { path += "&before=\(before)" }
            let trail = try await operatorCall(connection, .GET, path, as: OperatorAuditTrail.self)
            print(pad("ID", 6), pad("AT", 25), pad("ACTOR", 16), pad("ACTION", 17), pad("TXID", 36), pad("RESULT", 10), "REASON")
            for entry in trail.entries {
                print(pad(String(entry.id), 6), pad(entry.at, 25), pad(entry.actor, 16), pad(entry.action, 17), pad(entry.txid, 36),
                      pad(entry.result ?? "(unknown)", 10), entry.reason)
            }
            if trail.entries.isEmpty { print("(none)") }
        }
    }
}

private func validTxID(_ text: String) throws -> TxID {
    if let problem = TxID.problem(with: text) { throw ValidationError("\(problem)") }
    return try TxID(text)
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

private func operatorCall<T: Decodable>(
    _ connection: ParticipantCommand.Connection, _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, as type: T.Type
) async throws -> T {
    let secret = try readPresentedToken(connection.operatorSecretFile, option: "--operator-secret-file")
    let http = HTTPClientSettings().makeClient(tls: try connection.tls.clientTLS())
    do {
        var request = HTTPClientRequest(url: connection.participant.trimmingSuffix("/") + path)
        request.method = method
        request.headers.add(name: "Authorization", value: secret.authorizationHeaderValue)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(body)
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let bytes = Array(buffer: try await response.body.collect(upTo: 16 << 20))
        try await http.shutdown()
        guard response.status.code == 200 else {
            let detail = (try? WireJSON.decode(ErrorResponse.self, from: bytes))?.error.message ?? String(decoding: bytes, as: UTF8.self)
            throw ValidationError("\(response.status.code): \(detail)")
        }
        return try WireJSON.decode(type, from: bytes)
    } catch {
        try? await http.shutdown()
        throw error
    }
}

private extension String {
    func trimmingSuffix(_ suffix: Character) -> String {
        var text = Substring(self)
        while text.last == suffix { text = text.dropLast() }
        return String(text)
    }
}
