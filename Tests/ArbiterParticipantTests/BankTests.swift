import ArbiterCore
import ArbiterParticipant
import BankExample
import Foundation
import Testing

/// The bank resource and its routes, in process.
@Suite("Bank example in process")
struct BankTests {
    static func debit(_ account: String, _ amount: Int) -> String { #"{"op":"debit","account":"\#(account)","amount":\#(amount)}"# }
    static func credit(_ account: String, _ amount: Int) -> String { #"{"op":"credit","account":"\#(account)","amount":\#(amount)}"# }

    @Test("a transfer's two branches: reservation at prepare, money moved at commit, released at abort")
    func transfer() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(BankResource(), directory: directory, routes: BankRoutes.add(to:)) { node in
                let http = node.http
                #expect(try await http.post(node.url + "/accounts", #"{"id":"alice","balance":1000}"#).status == 201)
                #expect(try await http.post(node.url + "/accounts", #"{"id":"bob","balance":0}"#).status == 201)
                let duplicate = try await http.post(node.url + "/accounts", #"{"id":"bob","balance":5}"#)
                #expect(duplicate.status == 409)
                #expect(try await http.post(node.url + "/accounts", #"{"id":"bad id","balance":5}"#).status == 400)
                #expect(try await http.post(node.url + "/accounts", #"{"id":"carol","balance":-5}"#).status == 400)
                #expect(try await http.post(node.url + "/accounts", #"{"id":"carol","balance":5}"#, token: nil).status == 401)

                #expect(try await node.prepare("x-1", payload: Self.debit("alice", 300)).json()["vote"] as? String == "yes")
                #expect(try await node.prepare("x-2", payload: Self.credit("bob", 300)).json()["vote"] as? String == "yes")
                let alice = try await http.get(node.url + "/accounts/alice").json()
                #expect(alice["balance"] as? Int == 1000)
                #expect(alice["reserved"] as? Int == 300)

                // Both accounts are locked while the transfer is in doubt.
                let blocked = try await node.prepare("x-3", payload: Self.credit("alice", 1))
                #expect((try blocked.json()["reason"] as? String)?.contains("locked by transaction x-1") == true)

                _ = try await node.commit("x-1")
                _ = try await node.commit("x-2")
                let accounts = try #require(try await http.get(node.url + "/accounts").json()["accounts"] as? [[String: Any]])
                #expect(accounts.map { $0["id"] as? String } == ["alice", "bob"])
                #expect(accounts.map { $0["balance"] as? Int } == [700, 300])
                #expect(accounts.map { $0["reserved"] as? Int } == [0, 0])

                // Refusals: not enough money, no such account, malformed amount.
                let poor = try await node.prepare("x-4", payload: Self.debit("bob", 301))
                #expect((try poor.json()["reason"] as? String)?.contains("insufficient funds") == true)
                let missing = try await node.prepare("x-5", payload: Self.credit("zed", 1))
                #expect(try missing.json()["reason"] as? String == "no account zed")
                let negative = try await node.prepare("x-6", payload: Self.debit("bob", -1))
                #expect((try negative.json()["reason"] as? String)?.contains("amount") == true)
                let fractional = try await node.prepare("x-7", payload: #"{"op":"debit","account":"bob","amount":1.5}"#)
                #expect(try fractional.json()["vote"] as? String == "no")

                // An abort after prepare releases the reservation; the balance is untouched.
                #expect(try await node.prepare("x-8", payload: Self.debit("bob", 300)).json()["vote"] as? String == "yes")
                #expect(try await http.get(node.url + "/accounts/bob").json()["reserved"] as? Int == 300)
                _ = try await node.abort("x-8")
                let bob = try await http.get(node.url + "/accounts/bob").json()
                #expect(bob["balance"] as? Int == 300)
                #expect(bob["reserved"] as? Int == 0)
                #expect(try await http.get(node.url + "/accounts/zed").status == 404)
            }
        }
    }
}
