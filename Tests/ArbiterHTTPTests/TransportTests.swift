import ArbiterCore
@testable import ArbiterHTTP
import ArbiterTesting
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import ServiceLifecycle
import Testing

/// A server that counts the requests it handles: a refused connection must never reach it.
private func countingRouter(_ hits: Counter) -> Router<BasicRequestContext> {
    let router = Router()
    router.post("/echo") { request, _ -> Response in
        hits.increment()
        let body = try await request.body.collect(upTo: 1 << 20)
        return Response(status: .ok, body: .init(byteBuffer: body))
    }
    return router
}

/// Runs `router` on 127.0.0.1 (a free port) behind ``ServerTransport`` with `tls` and `limits`.
private func withTransportServer<T: Sendable>(
    _ router: Router<BasicRequestContext>, tls: TLSSettings? = nil, limits: ConnectionLimits = ConnectionLimits(),
    _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = Application(
        router: router,
        server: try ServerTransport.builder(tls: tls, limits: limits, logger: testLogger("transport")),
        configuration: .init(address: .hostname("127.0.0.1", port: 0), availableConnectionsDelegate: limits.acceptCeiling(logger: testLogger("accept"))),
        onServerRunning: { channel in
            continuation.yield(channel.localAddress?.port ?? 0)
            continuation.finish()
        },
        logger: testLogger("transport-server"))
    let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: testLogger("transport-group"))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: Result<T, any Error>
        do {
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next(), port > 0 else { throw TestFailure("the server did not report its port") }
            result = .success(try await body(port))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        await stopWithin(.seconds(3), &tasks)
        return try result.get()
    }
}

/// One POST through each client path (AsyncHTTPClient and HTTP1Connections) with `tls`; the
/// statuses, or the errors' descriptions for the calls that failed.
private func callBothWays(port: Int, tls: ClientTLS) async -> (asyncHTTPClient: CallOutcome, connections: CallOutcome) {
    let url = "https://127.0.0.1:\(port)/echo"
    let http = HTTPClientSettings().makeClient(tls: tls)
    let connections = HTTP1Connections(tls: tls)
    defer { connections.shutdown() }
    let first: CallOutcome
    do {
        first = .status(try await WireCall.execute(
            http, method: .POST, url: url, body: Array("{}".utf8), secret: nil, timeout: .seconds(5), responseSizeMax: 1024).status)
    } catch {
        first = .failed("\(error)")
    }
    try? await http.shutdown()
    let second: CallOutcome
    do {
        second = .status(try await connections.execute(
            method: .POST, url: url, headers: [], body: Array("{}".utf8), timeout: .seconds(5), responseSizeMax: 1024).status)
    } catch {
        second = .failed("\(error)")
    }
    return (first, second)
}

/// A call's status, or why it failed.
private enum CallOutcome: Equatable {
    case status(Int)
    case failed(String)

    var failed: Bool { if case .failed = self { true } else { false } }
}

@Suite("TLS and mutual TLS: certificates made with openssl at run time", .serialized,
       .enabled(if: TestCertificates.isOpenSSLAvailable, "needs the openssl command"))
struct TLSTransportTests {
    let directory: TemporaryDirectory
    let certificates: TestCertificates

    init() throws {
        directory = try TemporaryDirectory(prefix: "arbiter-tls")
        certificates = try TestCertificates(directory: directory.path)
    }

    private func server(_ identity: TestCertificates.Identity, requireClient: Bool = true) -> TLSSettings {
        TLSSettings(certificateFile: identity.certificate, keyFile: identity.key, caFile: certificates.caCertificate,
                    requiresClientCertificate: requireClient)
    }

    private func client(_ identity: TestCertificates.Identity?, ca: String? = nil) throws -> ClientTLS {
        try ClientTLS(caFile: ca ?? certificates.caCertificate, certificateFile: identity?.certificate, keyFile: identity?.key)
    }

    @Test("a client with the CA and a client certificate is served over both client paths")
    func mutualTLS() async throws {
        let hits = Counter()
        let tls = try client(certificates.client)
        try await withTransportServer(countingRouter(hits), tls: server(certificates.server)) { port in
            let (viaClient, viaConnections) = await callBothWays(port: port, tls: tls)
            #expect(viaClient == .status(200))
            #expect(viaConnections == .status(200))
        }
        #expect(hits.count == 2)
    }

    @Test("without a client certificate, or with one from another CA, the handshake fails and no request is handled")
    func clientCertificateRequired() async throws {
        let hits = Counter()
        try await withTransportServer(countingRouter(hits), tls: server(certificates.server)) { port in
            for tls in [try client(nil), try client(certificates.otherClient)] {
                let (viaClient, viaConnections) = await callBothWays(port: port, tls: tls)
                #expect(viaClient.failed, "\(viaClient)")
                #expect(viaConnections.failed, "\(viaConnections)")
            }
        }
        #expect(hits.count == 0)
    }

    @Test("an expired server certificate, or one from another CA, is refused by both client paths")
    func serverCertificateRefused() async throws {
        let hits = Counter()
        for identity in [certificates.expiredServer, certificates.otherServer] {
            try await withTransportServer(countingRouter(hits), tls: server(identity, requireClient: false)) { port in
                let (viaClient, viaConnections) = await callBothWays(port: port, tls: try client(certificates.client))
                #expect(viaClient.failed, "\(viaClient)")
                #expect(viaConnections.failed, "\(viaConnections)")
                if case .failed(let message) = viaConnections {
                    #expect(message.contains("unreachable"), "a TLS failure is a connection failure: \(message)")
                }
            }
        }
        #expect(hits.count == 0)
    }

    @Test("a client that trusts another CA refuses the server")
    func wrongCA() async throws {
        let hits = Counter()
        try await withTransportServer(countingRouter(hits), tls: server(certificates.server, requireClient: false)) { port in
            let tls = try client(nil, ca: certificates.otherCACertificate)
            let (viaClient, viaConnections) = await callBothWays(port: port, tls: tls)
            #expect(viaClient.failed && viaConnections.failed)
        }
        #expect(hits.count == 0)
    }

    @Test("settings that do not go together are refused before anything starts")
    func settingsProblems() throws {
        #expect(TLSSettings(certificateFile: "a.pem").problem() != nil)
        #expect(TLSSettings(certificateFile: "a.pem", keyFile: "a.key", requiresClientCertificate: true).problem() != nil)
        #expect(TLSSettings(caFile: "ca.pem", requiresClientCertificate: true).problem() != nil)
        #expect(TLSSettings(certificateFile: "a.pem", keyFile: "a.key", caFile: "ca.pem", requiresClientCertificate: true).problem() == nil)
        #expect(throws: TLSSetupError.self) {
            try TLSSettings(certificateFile: directory.path + "/missing.pem", keyFile: certificates.server.key).serverConfiguration()
        }
        #expect(throws: TLSSetupError.self) { try ClientTLS(caFile: certificates.server.key) }
    }
}

@Suite("Connection limits: the cap at accept, the idle and request-read timeouts", .serialized)
struct ConnectionLimitTests {
    @Test("connections over the cap are closed at once; those under it are served; room frees as they close")
    func cap() async throws {
        let hits = Counter()
        try await withTransportServer(countingRouter(hits), limits: ConnectionLimits(connectionsMax: 4)) { port in
            var held: [RawConnection] = []
            for _ in 0..<4 { held.append(try RawConnection(port: port)) }
            // The server has accepted them once it has served a request on each (kept alive), and
            // only then do the others come: however late a busy test process accepts.
            for connection in held {
                #expect(connection.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"))
            }
            try await eventually("the four connections under the cap are served", timeout: .seconds(60)) { hits.count == 4 }
            let over = try (0..<6).map { _ in try RawConnection(port: port) }
            for connection in over { #expect(await connection.closed(within: .seconds(30)), "a connection over the cap is closed") }
            #expect(held.allSatisfy { !$0.isClosedByPeer }, "connections under the cap stay open")
            // Room again: a request goes through once the held connections close.
            held.removeAll()
            // Each attempt blocks for up to 2 s (a raw socket); leave room for many on a loaded machine.
            try await eventually("a request is served again", timeout: .seconds(30)) {
                let connection = try RawConnection(port: port)
                connection.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                _ = await connection.closed(within: .milliseconds(2000))
                return hits.count > 4
            }
        }
    }

    @Test("an idle connection is closed after the idle timeout, a kept-alive one too after its answer")
    func idle() async throws {
        let hits = Counter()
        // Nothing but the idle timeout can close these connections within the wait: the silent one
        // never starts the request-read clock, and that clock is longer than the wait anyway. The
        // wait is long because a test process busy with other suites may accept late.
        let limits = ConnectionLimits(idleTimeout: .milliseconds(300), requestReadTimeout: .seconds(600))
        try await withTransportServer(countingRouter(hits), limits: limits) { port in
            let silent = try RawConnection(port: port)
            let served = try RawConnection(port: port)
            #expect(served.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"))
            #expect(await silent.closed(within: .seconds(120)))
            #expect(await served.closed(within: .seconds(120)))
            #expect(hits.count == 1)
        }
    }

    @Test("half a request head, or a request trickled byte by byte, is cut off after the request-read timeout")
    func requestRead() async throws {
        let hits = Counter()
        let limits = ConnectionLimits(idleTimeout: .seconds(30), requestReadTimeout: .milliseconds(500))
        try await withTransportServer(countingRouter(hits), limits: limits) { port in
            let half = try RawConnection(port: port)
            #expect(half.send("POST /echo HTTP/1.1\r\nHost: a\r\n"))
            // A head that never ends, a byte every 100 ms: only the request-read timeout can cut
            // it off within the 20 s allowed (the idle timeout is 30 s), however late a busy test
            // process gets to it.
            let trickle = try RawConnection(port: port)
            var trickleClosed = !trickle.send("POST /echo HTTP/1.1\r\nHost: a\r\nX-Pad: ")
            let deadline = ContinuousClock.now + .seconds(20)
            while !trickleClosed && ContinuousClock.now < deadline {
                if !trickle.send("a") {
                    trickleClosed = true
                } else {
                    trickleClosed = await trickle.closed(within: .milliseconds(100))
                }
            }
            #expect(trickleClosed, "the trickled request is cut off by the request-read timeout")
            // Both cut off by the request-read timeout, not the 30 s idle timeout; no bound on how
            // long the machine took to get there.
            #expect(await half.closed(within: .milliseconds(10_000)))
            // A whole request in time is served, and its connection then waits for the idle timeout.
            let prompt = try RawConnection(port: port)
            #expect(prompt.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"))
            let promptClosed = await prompt.closed(within: .milliseconds(1000))
            #expect(!promptClosed, "a served connection is idle, not cut off")
        }
        #expect(hits.count == 1)
    }

    @Test("a request answered before its body arrived leaves the connection idle, and the idle timeout closes it")
    func answeredEarly() async throws {
        let router = Router()
        router.post("/early") { _, _ -> Response in Response(status: .unauthorized) }
        let limits = ConnectionLimits(idleTimeout: .milliseconds(500), requestReadTimeout: .seconds(30))
        try await withTransportServer(router, limits: limits) { port in
            let connection = try RawConnection(port: port)
            #expect(connection.send("POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"))
            try await Task.sleep(for: .milliseconds(200))
            #expect(connection.send("{}"))
            #expect(await connection.closed(within: .milliseconds(5000)), "closed by the idle timeout, not left open")
        }
    }

    @Test("the cap never exceeds the open-files limit minus the reserve")
    func effectiveCap() {
        #expect(ConnectionLimits(connectionsMax: 1024).effectiveConnectionsMax(openFilesLimit: 256) == 192)
        #expect(ConnectionLimits(connectionsMax: 1024).effectiveConnectionsMax(openFilesLimit: 1024) == 768)
        #expect(ConnectionLimits(connectionsMax: 1024).effectiveConnectionsMax(openFilesLimit: 1_048_576) == 1024)
        #expect(ConnectionLimits(connectionsMax: 1024).effectiveConnectionsMax(openFilesLimit: 40) == 1)
        #expect(ConnectionLimits(connectionsMax: 100).effectiveConnectionsMax(openFilesLimit: nil) == 100)
        #expect(ConnectionLimits.openFilesLimit() != nil)
    }
}
