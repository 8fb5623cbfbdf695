import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import AsyncHTTPClient
import BankCluster
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension EndToEnd {
    /// The attacks a client could make when every party shared one secret, tried against real
    /// processes holding only what a client holds (the cluster runs with a credential per role
    /// and a participant registry): each is refused and changes nothing, and transfers still work.
    @Suite("Attacks by a client", .serialized)
    struct Attacks {
        @Test("a client token cannot drive a participant, name an unregistered URL, or pre-abort another's id")
        func clientAttacksAreRefused() async throws {
            try await Scenario.run("client attacks refused") { scenario in
                let cluster = scenario.cluster
                let http = cluster.httpClient
                let token = cluster.clientToken
                let bank = cluster.url(.node(1))
                let before = try await cluster.accounts(at: 1)

                // 1. Credit an account straight at the bank: a one-phase prepare, or prepare + commit.
                let credit = #"{"op":"credit","account":"\#(Workload.accountID(1, 0))","amount":1000000}"#
                let onePhase = #"{"txid":"steal-1","coordinator":"\#(cluster.coordinatorURL)","payload":\#(credit),"onePhase":true}"#
                let prepare = #"{"txid":"steal-2","coordinator":"\#(cluster.coordinatorURL)","payload":\#(credit)}"#
                for (path, body) in [("/v1/prepare", onePhase), ("/v1/prepare", prepare), ("/v1/commit", #"{"txid":"steal-2"}"#),
                                     ("/v1/abort", #"{"txid":"someone-elses"}"#)] {
                    let reply = try await rawRequest(http, .POST, bank + path, body, token: token)
                    #expect(reply.status == 403, "\(path): \(reply.body)")
                }

                // 2. Make the coordinator call a URL of the client's choosing (an internal service,
                //    or a listener that would collect its credential).
                for participant in ["http://127.0.0.1:1/collect", bank + "/any/path", "http://169.254.169.254"] {
                    let body = #"{"branches":[{"participant":"bank-0","payload":\#(credit)},{"participant":"\#(participant)","payload":{}}]}"#
                    let reply = try await rawRequest(http, .POST, cluster.coordinatorURL + "/v1/transactions", body, token: token)
                    #expect(reply.status == 400 && reply.body.contains("unknown_participant"), "\(participant): \(reply.body)")
                }

                // 3. Pre-abort an id someone else will use, through the participants' inquiry.
                let inquiry = try await rawRequest(http, .GET, cluster.coordinatorURL + "/v1/transactions/future-id/outcome", token: token)
                #expect(inquiry.status == 403, "\(inquiry.body)")

                // Nothing changed at the bank, and a real transfer by registered names commits.
                #expect(try await cluster.accounts(at: 1) == before)
                for node in 0..<2 { #expect(try await cluster.inDoubt(at: node).isEmpty) }
                let txid = try TxID("legit-\(scenario.seed)")
                let answer = try await scenario.submit(txid, [
                    Branch(participant: ParticipantID("bank-0"), payload: Payload(#"{"op":"debit","account":"\#(Workload.accountID(0, 0))","amount":7}"#)),
                    Branch(participant: ParticipantID("bank-1"), payload: Payload(#"{"op":"credit","account":"\#(Workload.accountID(1, 0))","amount":7}"#)),
                ], nodes: [0, 1], timeout: .seconds(30))
                #expect(answer?.outcome == .committed)
                // The id the client tried to pre-abort is still free.
                let future = try await scenario.submit(try TxID("future-id"), [
                    cluster.branch(.debit, Workload.accountID(0, 1), 1, at: 0), cluster.branch(.credit, Workload.accountID(1, 1), 1, at: 1),
                ], nodes: [0, 1], timeout: .seconds(30))
                #expect(future?.outcome == .committed)
            }
        }
    }
}
