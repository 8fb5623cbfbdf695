@testable import ArbiterClient
import ArbiterCoordinator
import ArbiterCore
@testable import ArbiterHTTP
import AsyncHTTPClient
import ArbiterTesting
import Foundation
import Testing

/// The dashboard in a real browser: headless Chromium loads `/dashboard` from a running
/// coordinator after a few transactions, one of them stuck, and the test reads the DOM the page's
/// script built; with ARBITER_UPDATE_SCREENSHOTS=1 its screenshot replaces docs/images/dashboard.png.
///
/// Chromium cannot be handed a cookie on its command line, so the test logs in the way a script
/// would: `POST /dashboard/login` with the operator token and `link=1` returns a one-time link
/// (valid 5 minutes, redeemed once) that sets the session cookie and redirects to the page.
@Suite("Dashboard in a browser", .enabled(if: chromiumPath != nil, "chromium is not installed (apt-get install -y chromium); the dashboard browser test is skipped"))
struct DashboardBrowserTests {
    @Test("the page shows counts, throughput, the stuck transaction and who owes it, participants and the audit trail")
    func dashboardShowsTheCoordinator() async throws {
        let chromium = try #require(chromiumPath)
        let directory = try TemporaryDirectory()
        let a = FakeParticipant { id in id.rawValue.hasPrefix("declined-") ? .no("insufficient funds") : .yes }
        let b = FakeParticipant()
        b.setAcceptsDecisions(false)
        try await withParticipants([a, b]) { ids in
            let registry = try ParticipantRegistry([.init(name: "bank-a", url: ids[0].rawValue), .init(name: "bank-b", url: ids[1].rawValue)])
            try await withCoordinator(data: directory.path, config: OperatorLeverTests.slowRetry, participants: registry) { url, client, http async throws in
                for index in 1...5 {
                    #expect(try await client.submit(branches: [branch(ids[0])], id: txid("paid-\(index)"), wait: .completion).outcome == .committed)
                }
                #expect(try await client.submit(branches: [branch(ids[0])], id: txid("declined-1"), wait: .completion).outcome == .aborted)
                #expect(try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("stuck-web-1")).outcome == .committed)
                // The dashboard lists what has been open at least a second.
                try await eventually("the stuck transaction is a second old and owed by bank-b") {
                    try await client.stuck(olderThanMs: 1000).transactions.first?.owing == [ids[1].rawValue]
                }
                _ = try await client.retryPhaseTwo(txid("stuck-web-1"), reason: "bank-b restarted")

                // A Chromium starved of CPU on a loaded machine sometimes prints nothing: try again
                // (three times at most), each time with a fresh one-time login link.
                var dom = ""
                for _ in 0..<3 where dom.isEmpty {
                    dom = try await runChromium(chromium, ["--dump-dom"], url: url + (try await loginLink(url, http)))
                }
                #expect(dom.contains("stuck-web-1"), "the stuck transaction is listed")
                #expect(dom.contains(#"<td class="owing">\#(ids[1].rawValue)</td>"#), "with the participant that owes it")
                #expect(dom.contains(#"data-state="committed"><b>5</b>"#), "five committed")
                #expect(dom.contains(#"data-state="aborted"><b>1</b>"#), "one aborted")
                #expect(dom.contains(#"data-state="committing"><b>1</b>"#), "one committing")
                #expect(dom.contains("bank-a") && dom.contains("bank-b"), "the registered participants")
                #expect(dom.contains("bank-b restarted") && dom.contains("test-operator"), "the operator's action")
                #expect(dom.contains("retry now"))
                // The throughput panel's caption counts the last minute, which a loaded machine can
                // outlast; that it is rendered is what is checked.
                #expect(dom.contains("last minute: "), "the throughput panel")
                #expect(!dom.contains("Operator token"), "logged in, not the login form")

                // Without a session, the browser gets the login form.
                let login = try await runChromium(chromium, ["--dump-dom"], url: url + "/dashboard")
                #expect(login.contains("Operator token"))

                let screenshot = directory.path + "/dashboard.png"
                _ = try await runChromium(chromium, ["--screenshot=\(screenshot)", "--window-size=1280,900"], url: url + (try await loginLink(url, http)))
                let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
                #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
                // ARBITER_UPDATE_SCREENSHOTS=1 refreshes the picture in the docs; a plain run leaves
                // the working tree as it was.
                if ProcessInfo.processInfo.environment["ARBITER_UPDATE_SCREENSHOTS"] == "1" {
                    let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                        .appendingPathComponent("docs/images/dashboard.png")
                    try? FileManager.default.createDirectory(at: docs.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try png.write(to: docs)
                }
            }
        }
    }

    @Test("a session cookie is HttpOnly and SameSite=Strict, holds no token, and a POST with it needs the CSRF token")
    func sessionCookieAndCSRF() async throws {
        let directory = try TemporaryDirectory()
        try await withCoordinator(data: directory.path) { url, _, http async throws in
            var login = HTTPClientRequest(url: url + "/dashboard/login")
            login.method = .POST
            login.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            login.body = .bytes(Array("token=\(TestSecrets.operatorSecretText)".utf8))
            let response = try await http.execute(login, timeout: .seconds(10))
            #expect(response.status == .seeOther)
            let cookie = try #require(response.headers["Set-Cookie"].first)
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
            #expect(!cookie.contains(TestSecrets.operatorSecretText))
            let session = String(cookie.split(separator: ";")[0])

            var summary = HTTPClientRequest(url: url + "/dashboard/api/summary")
            summary.headers.add(name: "Cookie", value: session)
            let summaryResponse = try await http.execute(summary, timeout: .seconds(10))
            #expect(summaryResponse.status == .ok)
            let body = try await summaryResponse.body.collect(upTo: 1 << 20)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])
            let csrf = try #require(json["csrf"] as? String)

            var retry = HTTPClientRequest(url: url + "/v1/operator/transactions/x/retry")
            retry.method = .POST
            retry.headers.add(name: "Cookie", value: session)
            retry.body = .bytes(Array(#"{"reason":"r"}"#.utf8))
            #expect(try await http.execute(retry, timeout: .seconds(10)).status == .forbidden)
            retry.headers.add(name: "X-CSRF-Token", value: csrf)
            #expect(try await http.execute(retry, timeout: .seconds(10)).status == .notFound)

            var wrong = HTTPClientRequest(url: url + "/dashboard/login")
            wrong.method = .POST
            wrong.body = .bytes(Array("token=nope".utf8))
            #expect(try await http.execute(wrong, timeout: .seconds(10)).status == .unauthorized)
        }
    }
}

/// A one-time login link (path and query) from `POST /dashboard/login`.
private func loginLink(_ url: String, _ http: HTTPClient) async throws -> String {
    var request = HTTPClientRequest(url: url + "/dashboard/login")
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
    request.body = .bytes(Array("token=\(TestSecrets.operatorSecretText)&link=1".utf8))
    let response = try await http.execute(request, timeout: .seconds(10))
    let body = try await response.body.collect(upTo: 1 << 16)
    let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: String])
    return try #require(json["loginLink"])
}

/// Runs headless Chromium on `url` with a fresh profile; returns its standard output. Killed (by
/// its pid) if it has not finished within two minutes.
private func runChromium(_ chromium: String, _ arguments: [String], url: String) async throws -> String {
    let profile = try TemporaryDirectory(prefix: "arbiter-chromium")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: chromium)
    process.arguments = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--user-data-dir=\(profile.path)", "--virtual-time-budget=5000",
    ] + arguments + [url]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    let finished = AsyncStream<Void>.makeStream()
    process.terminationHandler = { _ in finished.continuation.yield(); finished.continuation.finish() }
    try process.run()
    async let read = readToEnd(output.fileHandleForReading)
    let watchdog = Task {
        try await Task.sleep(for: .seconds(120))
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
    for await _ in finished.stream {}
    watchdog.cancel()
    let data = await read
    return String(decoding: data, as: UTF8.self)
}
