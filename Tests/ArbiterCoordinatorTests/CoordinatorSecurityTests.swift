import ArbiterClient
import ArbiterCoordinator
import ArbiterCore
import ArbiterHTTP
import AsyncHTTPClient
import Foundation
import Testing

/// Each credential keeps to its role, and the coordinator sends its credential only to the
/// participants its operator registered.
@Suite("Coordinator roles and registry")
struct CoordinatorSecurityTests {
    static let client = NamedToken(name: "billing", secret: try! BearerSecret("client-t0ken"))

    /// The JSON error code of a response body.
    func code(_ body: String) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    @Test("with client tokens: a client submits and reads; the protocol secret cannot submit; a client cannot inquire or list")
    func rolesAtTheCoordinator() async throws {
        let directory = try TemporaryDirectory()
        let bank = FakeParticipant()
        try await withParticipants([bank]) { ids in
            try await withCoordinator(data: directory.path, clientTokens: [Self.client]) { url, client, http async throws in
                let submit = #"{"id": "t-1", "branches": [{"participant": "\#(ids[0].rawValue)", "payload": 1}]}"#
                // The protocol secret (a participant's credential) cannot submit.
                let asParticipant = try await rawRequest(http, .POST, url + "/v1/transactions", body: submit, token: TestSecrets.protocolSecret)
                #expect(asParticipant.status == 403 && code(asParticipant.body) == "forbidden", "\(asParticipant.body)")
                #expect(bank.state.messages == 0, "nothing was sent for a refused submit")
                // An unknown token is not a role at all.
                let unknown = try await rawRequest(http, .POST, url + "/v1/transactions", body: submit, token: try BearerSecret("guess"))
                #expect(unknown.status == 401 && code(unknown.body) == "unauthorized")
                // The client token submits and reads.
                let submitted = try await rawRequest(http, .POST, url + "/v1/transactions", body: submit, token: Self.client.secret)
                #expect(submitted.status == 200, "\(submitted.body)")
                #expect(try await rawRequest(http, .GET, url + "/v1/transactions/t-1", token: Self.client.secret).status == 200)
                // A client may not inquire: an inquiry about an unknown id would record an abort.
                let inquiry = try await rawRequest(http, .GET, url + "/v1/transactions/someone-elses/outcome", token: Self.client.secret)
                #expect(inquiry.status == 403 && code(inquiry.body) == "forbidden", "\(inquiry.body)")
                #expect(try await rawRequest(http, .GET, url + "/v1/transactions/someone-elses", token: Self.client.secret).status == 404,
                        "the refused inquiry recorded nothing")
                // Participants inquire with the protocol secret; clients do not list.
                #expect(try await rawRequest(http, .GET, url + "/v1/transactions/t-1/outcome", token: TestSecrets.protocolSecret).status == 200)
                #expect(try await rawRequest(http, .GET, url + "/v1/transactions", token: Self.client.secret).status == 403)
                #expect(try await rawRequest(http, .GET, url + "/v1/transactions", token: TestSecrets.operatorSecret).status == 200)
                #expect(try await client.list().transactions.map(\.id) == ["t-1"])
            }
        }
    }

    @Test("a branch naming a participant the registry does not hold is refused before anything is written or sent")
    func unregisteredParticipantIsRefused() async throws {
        let directory = try TemporaryDirectory()
        let registered = FakeParticipant()
        let stranger = FakeParticipant()
        try await withParticipants([registered, stranger]) { ids in
            let registry = try ParticipantRegistry([.init(name: "bank-a", url: ids[0].rawValue)])
            try await withCoordinator(data: directory.path, participants: registry) { url, client, http async throws in
                for participant in [ids[1].rawValue, ids[1].rawValue + "/any/path", "http://169.254.169.254/latest", "bank-b"] {
                    let body = #"{"branches": [{"participant": "bank-a", "payload": 1}, {"participant": "\#(participant)", "payload": 2}]}"#
                    let response = try await rawRequest(http, .POST, url + "/v1/transactions", body: body)
                    #expect(response.status == 400, "\(participant): \(response.body)")
                    #expect(code(response.body) == "unknown_participant", "\(response.body)")
                    #expect(response.body.contains("branches[1].participant"), "\(response.body)")
                }
                #expect(registered.state.messages == 0 && stranger.state.messages == 0, "nothing was sent")
                #expect(try await client.list().transactions.isEmpty, "nothing was written")
            }
        }
    }

    @Test("branches name registered participants by name or URL; each gets its own secret, or the protocol secret")
    func registeredParticipantsByNameWithTheirOwnSecrets() async throws {
        let directory = try TemporaryDirectory()
        let ownSecret = try BearerSecret("bank-a-only")
        let bankA = FakeParticipant(secret: ownSecret)  // refuses the coordinator's protocol secret
        let bankB = FakeParticipant()
        try await withParticipants([bankA, bankB]) { ids in
            let registry = try ParticipantRegistry([
                .init(name: "bank-a", url: ids[0].rawValue + "/", secret: ownSecret),
                .init(name: "bank-b", url: ids[1].rawValue),
            ])
            try await withCoordinator(data: directory.path, participants: registry) { url, client, http async throws in
                let byName = try await client.submit(branches: [branch(ParticipantID("bank-a")), branch(ParticipantID("bank-b"))], id: txid("by-name"))
                #expect(byName.outcome == .committed)
                let byURL = try await client.submit(branches: [branch(ids[0]), branch(ParticipantID(ids[1].rawValue + "/"))], id: txid("by-url"))
                #expect(byURL.outcome == .committed)
                #expect(bankA.state.prepared.contains(txid("by-name")) && bankB.state.prepared.contains(txid("by-name")))
                // The log names participants by URL, whatever the branch said.
                let view = try await client.transaction(txid("by-name"))
                #expect(view.branches.map(\.participant) == [ids[0].rawValue, ids[1].rawValue])
                // bank-a's own secret is accepted on its inquiries.
                #expect(try await rawRequest(http, .GET, url + "/v1/transactions/by-name/outcome", token: ownSecret).status == 200)
            }
        }
    }

    @Test("the registry file: names, URLs, secret files relative to it; errors name the line")
    func registryFile() throws {
        let directory = try TemporaryDirectory()
        try "bank-a-secret\n".write(toFile: directory.path + "/a.secret", atomically: true, encoding: .utf8)
        let path = directory.path + "/participants"
        try """
            # the banks
            bank-a  http://127.0.0.1:9001/  a.secret

            bank-b\thttps://bank-b.example:9443
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let registry = try ParticipantRegistry(file: path)
        #expect(registry.entries.map(\.name) == ["bank-a", "bank-b"])
        #expect(try registry.resolve("bank-a", field: "p") == "http://127.0.0.1:9001")
        #expect(try registry.resolve("http://127.0.0.1:9001", field: "p") == "http://127.0.0.1:9001")
        #expect(try registry.resolve("https://bank-b.example:9443/", field: "p") == "https://bank-b.example:9443")
        let fallback = try BearerSecret("fallback")
        #expect(registry.secret(for: "http://127.0.0.1:9001", fallback: fallback)?.matches(Array("bank-a-secret".utf8)) == true)
        #expect(registry.secret(for: "https://bank-b.example:9443", fallback: fallback)?.matches(Array("fallback".utf8)) == true)
        #expect(registry.secret(for: "http://127.0.0.1:9002", fallback: fallback) == nil)
        #expect(registry.participantTokens.map(\.name) == ["bank-a"])

        // Reload picks up a new participant; a broken file leaves the registry as it was.
        try "bank-c http://127.0.0.1:9003\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try registry.reload() == 1)
        #expect(try registry.resolve("bank-c", field: "p") == "http://127.0.0.1:9003")
        try "bank-c http://127.0.0.1:9003\nbank-c http://127.0.0.1:9004\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: RegistryError.self) { try registry.reload() }
        #expect(registry.count == 1)

        for (text, line, fragment) in [
            ("bank-a ftp://x", 1, "http"),
            ("bank-a http://a:1\nbank-b http://a:1", 2, "twice"),
            ("http://a:1 http://a:1", 1, "name"),
            ("bank-a http://a:1 missing.secret", 1, "missing.secret"),
            ("bank-a", 1, "NAME URL"),
        ] {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            do {
                _ = try ParticipantRegistry(file: path)
                Issue.record("accepted \(text.debugDescription)")
            } catch {
                #expect(error.line == line, "\(error)")
                #expect(error.description.contains(fragment), "\(error)")
            }
        }
    }
}
