import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
import ArbiterTesting
import AsyncHTTPClient
import BankExample
import Foundation
import NIOCore
import Testing

/// The participant's dashboard in a real browser: headless Chromium, driven over the DevTools
/// protocol (``HeadlessChromium``), logs in through the form, reads the transactions in doubt, and
/// makes the guarded heuristic decision as an operator would: picks an outcome, types a reason,
/// ticks "I understand this may break atomicity", confirms. With ARBITER_UPDATE_SCREENSHOTS=1 its
/// screenshot replaces docs/images/participant-dashboard.png.
///
/// The node is the bank, in process, with transfers' branches in doubt: `transfer-17` and
/// `transfer-19`, whose coordinator is gone (nothing listens at its address), and `transfer-18`,
/// whose coordinator (a fake) answers that it has not decided.
@Suite("Participant dashboard in a browser", .serialized,
       .enabled(if: chromiumPath != nil, "chromium is not installed (apt-get install -y chromium); the dashboard browser tests are skipped"))
struct DashboardBrowserTests {
    static let lostCoordinator = "http://127.0.0.1:1"

    @Test("an operator logs in through the form, sees what is in doubt and what each coordinator last answered, and decides one through the guarded form")
    func heuristicDecisionThroughThePage() async throws {
        let chromium = try #require(chromiumPath)
        try await withTransfersInDoubt { node, coordinator in
            try await HeadlessChromium.with(chromium) { browser in
                let page = try await browser.newPage()
                try await logIn(page, node.url)

                let lost = try await page.text("tr.indoubt-row[data-txid='transfer-17']")
                #expect(lost.contains(Self.lostCoordinator) && lost.contains("alice"), "\(lost)")
                #expect(lost.contains("no answer: unreachable"), "the failed inquiry: \(lost)")
                let pending = try await page.text("tr.indoubt-row[data-txid='transfer-18']")
                #expect(pending.contains(coordinator) && pending.contains("bob"), "\(pending)")
                #expect(pending.contains("pending: not decided yet"), "the coordinator's answer: \(pending)")
                #expect(try await page.text("#inDoubtCount") == "3 in doubt")
                #expect(try await page.text("tr.indoubt-row").contains("transfer-17"), "oldest first")

                try await fillIn(page, "transfer-17", outcome: "aborted", reason: "coordinator lost with its disk, ticket 4711", tick: true)
                try await page.waitUntil("the page asks for confirmation", "!document.getElementById('confirm').hidden")
                #expect(try await page.text("#confirm-text").hasPrefix("Abort transfer-17 here, without its coordinator?"))
                #expect(try await node.stored("transfer-17")?.state == "prepared", "nothing is sent before the confirmation")
                try await page.click("#confirm-button")
                try await page.waitUntil("the page shows the result", "document.getElementById('decision-result').innerText.includes('is now aborted')")
                #expect(try await page.text("#decision-result").hasPrefix("transfer-17 is now aborted here, recorded as a heuristic decision"))

                // Decided, as the operator API tells, and audited under the session's operator.
                let status = try await node.http.get(node.url + "/v1/operator/transactions/transfer-17", token: TestSecrets.operatorText).json()
                #expect(status["state"] as? String == "aborted")
                #expect(status["heuristic"] as? Bool == true)
                let entries = try #require(try await node.http.get(node.url + "/v1/operator/audit", token: TestSecrets.operatorText)
                    .json()["entries"] as? [[String: Any]])
                #expect(entries.count == 1)
                #expect(entries.first?["actor"] as? String == "test-operator")
                #expect(entries.first?["action"] as? String == "decide-aborted")
                #expect(entries.first?["txid"] as? String == "transfer-17")
                #expect(entries.first?["reason"] as? String == "coordinator lost with its disk, ticket 4711")
                #expect(entries.first?["result"] as? String == "done")
                // The bank discarded the debit: alice's money is no longer reserved.
                let alice = try await node.http.get(node.url + "/accounts/alice").json()
                #expect(alice["balance"] as? Int == 1000 && alice["reserved"] as? Int == 0, "\(alice)")

                // The page's next poll shows the audit entry, and transfer-17 no longer in doubt.
                try await page.waitUntil("the audit trail shows the decision",
                    "document.getElementById('audit').innerText.includes('decide-aborted') && !document.querySelector(\"tr.indoubt-row[data-txid='transfer-17']\")")
                #expect(try await page.text("#audit").contains("ticket 4711"))
                #expect(try await page.text("#inDoubtCount") == "2 in doubt")

                // The picture for the guide: the second transaction's decision, up to its confirmation.
                try await fillIn(page, "transfer-18", outcome: "committed",
                                 reason: "coordinator down since 09:12; its operator confirmed commit, ticket 4712", tick: true)
                try await page.waitUntil("the page asks for confirmation", "!document.getElementById('confirm').hidden")
                try await saveScreenshot(try await page.screenshot())
                try await page.click("#cancel-button")
                try await page.waitUntil("the confirmation is withdrawn", "document.getElementById('confirm').hidden")
                #expect(try await node.stored("transfer-18")?.state == "prepared", "cancelled: nothing sent")
            }
        }
    }

    @Test("a click on a row's button counts when the page's poll redraws the table between the press and the release")
    func clickAcrossARedraw() async throws {
        let chromium = try #require(chromiumPath)
        try await withTransfersInDoubt { node, _ in
            try await HeadlessChromium.with(chromium) { browser in
                let page = try await browser.newPage()
                try await logIn(page, node.url)
                _ = try await page.evaluate("document.querySelector(\"button[data-decide='transfer-19']\").dataset.marked = 'yes'")
                try await page.click("button[data-decide='transfer-19']", between: "refresh()")
                try await page.waitUntil("the decision form of transfer-19 is open",
                    "!document.getElementById('decision').hidden && document.getElementById('decision-facts').innerText.includes('transfer-19')")
                // Released, the table is redrawn by the next poll again.
                _ = try await page.evaluate("refresh()")
                try await page.waitUntil("the table is redrawn after the release",
                    "document.querySelector(\"button[data-decide='transfer-19']\") !== null && !document.querySelector(\"button[data-decide='transfer-19']\").dataset.marked")
            }
        }
    }

    @Test("the page sends nothing without an outcome, a reason and the tick, the decide route refuses a session's request without the flag, the reason or the CSRF token, and the page shows a refusal")
    func decisionRefusedWithoutTheGuard() async throws {
        let chromium = try #require(chromiumPath)
        try await withTransfersInDoubt { node, _ in
            try await HeadlessChromium.with(chromium) { browser in
                let page = try await browser.newPage()
                try await logIn(page, node.url)

                // Nothing filled in: the page lists what is missing and asks for no confirmation.
                try await fillIn(page, "transfer-18", outcome: nil, reason: nil, tick: false)
                try await page.waitUntil("the page says what is missing", "document.getElementById('decision-error').innerText.startsWith('Not sent')")
                let everything = try await page.text("#decision-error")
                #expect(everything.contains("pick commit or abort") && everything.contains("give a reason") && everything.contains("tick"), "\(everything)")
                #expect(try await page.evaluate("document.getElementById('confirm').hidden") == "true")

                // An outcome and a reason, but not the tick.
                try await page.click("input[name=outcome][value=committed]")
                try await page.type("the coordinator is gone", into: "#reason")
                try await page.click("#decide")
                try await page.waitUntil("only the tick is missing", "!document.getElementById('decision-error').innerText.includes('give a reason')")
                let tickOnly = try await page.text("#decision-error")
                #expect(tickOnly.contains("tick") && !tickOnly.contains("pick commit or abort"), "\(tickOnly)")
                #expect(try await page.evaluate("document.getElementById('confirm').hidden") == "true")

                // The tick, but a blank reason.
                try await page.click("#understand")
                try await page.evaluate("(() => { const r = document.getElementById('reason'); r.value = '   '; r.dispatchEvent(new Event('input')); return true; })()")
                try await page.click("#decide")
                try await page.waitUntil("only the reason is missing", "!document.getElementById('decision-error').innerText.includes('tick')")
                #expect(try await page.text("#decision-error").contains("give a reason"))
                #expect(try await page.evaluate("document.getElementById('confirm').hidden") == "true")

                #expect(try await node.stored("transfer-18")?.state == "prepared")
                #expect(try await node.database.store.operatorActions().isEmpty, "nothing was sent")

                // The route itself refuses a session's request without the flag or the reason, and
                // any POST with the cookie but without the session's CSRF token.
                let decide = node.url + "/v1/operator/transactions/transfer-18/decide"
                try await SessionClient.with(node) { session in
                    let noFlag = try await session.post(decide, #"{"outcome":"committed","iUnderstandThisMayBreakAtomicity":false,"reason":"r"}"#)
                    #expect(noFlag.status == 400)
                    #expect((try noFlag.json()["error"] as? [String: Any])?["field"] as? String == "iUnderstandThisMayBreakAtomicity")
                    let noReason = try await session.post(decide, #"{"outcome":"committed","iUnderstandThisMayBreakAtomicity":true}"#)
                    #expect(noReason.status == 400)
                    #expect((try noReason.json()["error"] as? [String: Any])?["field"] as? String == "reason")
                    let noCSRF = try await session.post(decide, #"{"outcome":"committed","iUnderstandThisMayBreakAtomicity":true,"reason":"r"}"#, csrf: false)
                    #expect(noCSRF.status == 403)
                }
                #expect(try await node.stored("transfer-18")?.state == "prepared")
                #expect(try await node.database.store.operatorActions().isEmpty)

                // Decided elsewhere meanwhile: the page says so, and shows the route's 409.
                let elsewhere = try await node.http.post(decide, #"{"outcome":"aborted","iUnderstandThisMayBreakAtomicity":true,"reason":"decided by the CLI"}"#,
                                                         token: TestSecrets.operatorText)
                #expect(elsewhere.status == 200, "\(elsewhere)")
                try await page.waitUntil("the page sees it is no longer in doubt",
                                         "document.getElementById('decision-facts').innerText.includes('no longer in doubt')")
                try await page.evaluate("(() => { const r = document.getElementById('reason'); r.value = 'late'; r.dispatchEvent(new Event('input')); return true; })()")
                try await page.click("#decide")
                try await page.waitUntil("the page asks for confirmation", "!document.getElementById('confirm').hidden")
                try await page.click("#confirm-button")
                try await page.waitUntil("the page shows the refusal", "document.getElementById('decision-error').innerText.includes('Refused')")
                let refusal = try await page.text("#decision-error")
                #expect(refusal.contains("HTTP 409") && refusal.contains("aborted here, not prepared"), "\(refusal)")
                #expect(try await node.stored("transfer-18") == ParticipantTransactionStateView(state: "aborted", heuristic: true, tombstone: false))
                let results = try await node.database.store.operatorActions().map(\.result)
                #expect(results.count == 2 && results.first??.hasPrefix("refused") == true, "the refusal is audited: \(results)")
            }
        }
    }

    /// A bank node with accounts alice (1000), bob (250) and carol (500), and three branches in
    /// doubt, in this order: `transfer-17` (a debit of alice's; its coordinator is unreachable),
    /// `transfer-18` (a credit to bob; its coordinator answers `pending`) and `transfer-19` (a debit
    /// of carol's, from the unreachable coordinator). Runs `body` once an inquiry about each has ended,
    /// so that the page has the coordinators' answers to show.
    private func withTransfersInDoubt(_ body: (RunningNode<BankResource>, _ coordinator: String) async throws -> Void) async throws {
        try await FakeCoordinator.with { _, coordinator in
            try await withTemporaryDirectory { directory in
                try await withNode(BankResource(), directory: directory, configure: { $0.protocolConfig.inquiryTimeout = .milliseconds(100) },
                                   routes: BankRoutes.add(to:)) { node in
                    #expect(try await node.http.post(node.url + "/accounts", #"{"id":"alice","balance":1000}"#).status == 201)
                    #expect(try await node.http.post(node.url + "/accounts", #"{"id":"bob","balance":250}"#).status == 201)
                    #expect(try await node.http.post(node.url + "/accounts", #"{"id":"carol","balance":500}"#).status == 201)
                    let debit = #"{"op":"debit","account":"alice","amount":300}"#
                    #expect(try await node.prepare("transfer-17", payload: debit, coordinator: Self.lostCoordinator).json()["vote"] as? String == "yes")
                    let credit = #"{"op":"credit","account":"bob","amount":120}"#
                    #expect(try await node.prepare("transfer-18", payload: credit, coordinator: coordinator).json()["vote"] as? String == "yes")
                    let payout = #"{"op":"debit","account":"carol","amount":40}"#
                    #expect(try await node.prepare("transfer-19", payload: payout, coordinator: Self.lostCoordinator).json()["vote"] as? String == "yes")
                    try await ArbiterParticipantTests.eventually("an inquiry about each transaction in doubt has ended") {
                        let summary = try await node.http.get(node.url + "/dashboard/api/summary", token: TestSecrets.operatorText).json()
                        let inDoubt = summary["inDoubt"] as? [[String: Any]] ?? []
                        return inDoubt.count == 3 && inDoubt.allSatisfy { $0["lastInquiry"] is [String: Any] }
                    }
                    try await body(node, coordinator)
                }
            }
        }
    }

    /// Logs in through the form, as a person would: types the operator token and presses the button.
    private func logIn(_ page: BrowserPage, _ url: String) async throws {
        try await page.open(url + "/dashboard")
        try await page.waitUntil("the login form shows", #"document.querySelector("input[name=token]")"#)
        #expect(try await page.text("h1") == "Arbiter participant")
        try await page.type(TestSecrets.operatorText, into: "input[name=token]")
        try await page.click("button[type=submit]")
        try await page.waitUntil("the page lists the transactions in doubt", #"document.querySelector("tr.indoubt-row")"#)
    }

    /// Opens the decision form of `txid`, fills in what is given, and presses "Decide…".
    private func fillIn(_ page: BrowserPage, _ txid: String, outcome: String?, reason: String?, tick: Bool) async throws {
        try await page.click("button[data-decide='\(txid)']")
        try await page.waitUntil("the decision form of \(txid) is open",
            "!document.getElementById('decision').hidden && document.getElementById('decision-facts').innerText.includes('\(txid)')")
        if let outcome { try await page.click("input[name=outcome][value=\(outcome)]") }
        if let reason { try await page.type(reason, into: "#reason") }
        if tick { try await page.click("#understand") }
        try await page.click("#decide")
    }

    /// Checks the screenshot is a PNG; with ARBITER_UPDATE_SCREENSHOTS=1 it replaces the guide's
    /// picture (a plain run leaves the working tree as it was).
    private func saveScreenshot(_ png: Data) async throws {
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        if ProcessInfo.processInfo.environment["ARBITER_UPDATE_SCREENSHOTS"] == "1" {
            let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("docs/images/participant-dashboard.png")
            try FileManager.default.createDirectory(at: docs.deletingLastPathComponent(), withIntermediateDirectories: true)
            try png.write(to: docs)
        }
    }
}

/// Requests with a dashboard session's cookie, as the page's script sends them.
private struct SessionClient {
    let client: HTTPClient
    let cookie: String
    let csrf: String

    /// Opens a session with `POST /dashboard/login` (on a client that does not follow the redirect,
    /// so that it sees the cookie), reads its CSRF token from the summary, and runs `body`.
    static func with(_ node: RunningNode<BankResource>, _ body: (SessionClient) async throws -> Void) async throws {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        do {
            try await body(try await logIn(node, client))
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private static func logIn(_ node: RunningNode<BankResource>, _ client: HTTPClient) async throws -> SessionClient {
        var login = HTTPClientRequest(url: node.url + "/dashboard/login")
        login.method = .POST
        login.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        login.body = .bytes(ByteBuffer(string: "token=\(TestSecrets.operatorText)"))
        let response = try await client.execute(login, timeout: .seconds(30))
        #expect(response.status == .seeOther)
        let setCookie = try #require(response.headers["Set-Cookie"].first)
        let cookie = String(setCookie.split(separator: ";")[0])
        var summary = HTTPClientRequest(url: node.url + "/dashboard/api/summary")
        summary.headers.add(name: "Cookie", value: cookie)
        let body = try await client.execute(summary, timeout: .seconds(30)).body.collect(upTo: 1 << 20)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])
        return SessionClient(client: client, cookie: cookie, csrf: try #require(json["csrf"] as? String))
    }

    func post(_ url: String, _ body: String, csrf sendingCSRF: Bool = true) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Cookie", value: cookie)
        request.headers.add(name: "Content-Type", value: "application/json")
        if sendingCSRF { request.headers.add(name: "X-CSRF-Token", value: csrf) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await client.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return Reply(status: Int(response.status.code), body: Array(buffer.readableBytesView))
    }
}
