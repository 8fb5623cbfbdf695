import ArbiterTesting
import ArbiterCore
@testable import ArbiterHTTP
import AsyncHTTPClient
import Hummingbird
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A server that echoes what it was sent, answers a large body, waits, or closes the connection.
private func makeEchoServer(hits: Counter) -> Router<BasicRequestContext> {
    let router = Router()
    router.post("/echo") { request, _ -> Response in
        hits.increment()
        let body = try await request.body.collect(upTo: 1 << 20)
        return Response(status: .ok, body: .init(byteBuffer: body))
    }
    router.get("/large") { _, _ -> Response in
        Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "x"), count: 4096)))
    }
    router.get("/slow") { _, _ -> Response in
        try await Task.sleep(for: .seconds(5))
        return Response(status: .ok)
    }
    router.get("/bye") { _, _ -> Response in
        var headers = HTTPFields()
        headers[.connection] = "close"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: "bye")))
    }
    router.get("/missing") { _, _ -> Response in
        Response(status: .notFound, body: .init(byteBuffer: ByteBuffer(string: "{}")))
    }
    return router
}

@Suite("HTTP1Connections: the kept-alive connections of the hot path")
struct HTTP1ConnectionsTests {
    @Test("http and https URLs are parsed into host, port and path; others are left to AsyncHTTPClient")
    func targets() {
        let target = HTTP1Connections.target("http://127.0.0.1:8080/v1/batch")
        #expect(target?.endpoint == .init(host: "127.0.0.1", port: 8080))
        #expect(target?.authority == "127.0.0.1:8080")
        #expect(target?.path == "/v1/batch")
        #expect(HTTP1Connections.target("http://bank-a/v1/batch?x=1")?.endpoint == .init(host: "bank-a", port: 80))
        #expect(HTTP1Connections.target("http://bank-a/v1/batch?x=1")?.path == "/v1/batch?x=1")
        #expect(HTTP1Connections.target("http://bank-a")?.path == "/")
        #expect(HTTP1Connections.target("http://[::1]:9001/p")?.endpoint == .init(host: "::1", port: 9001))
        #expect(HTTP1Connections.target("https://bank-a/v1")?.endpoint == .init(host: "bank-a", port: 443, secure: true))
        #expect(HTTP1Connections.target("https://127.0.0.1:9001/v1")?.endpoint == .init(host: "127.0.0.1", port: 9001, secure: true))
        for refused in ["http://", "http://:80/", "http://a:0/", "http://a:99999/", "http://a:x/", "http://user@a/", "ftp://a/",
                        "http://a:+80/", "http://[::1/", "http://[]:80/"] {
            #expect(HTTP1Connections.target(refused) == nil, "\(refused)")
        }
    }

    @Test("a request carries its headers and body, and one connection serves request after request")
    func reuse() async throws {
        let hits = Counter()
        try await withLiveServer(makeEchoServer(hits: hits)) { port in
            let connections = HTTP1Connections()
            defer { connections.shutdown() }
            for index in 0..<5 {
                let body = Array("{\"n\":\(index)}".utf8)
                let reply = try await connections.execute(
                    method: .POST, url: "http://127.0.0.1:\(port)/echo",
                    headers: [("Content-Type", "application/json"), ("Authorization", "Bearer s3cret")],
                    body: body, timeout: .seconds(5), responseSizeMax: 1024)
                #expect(reply.status == 200)
                #expect(reply.body == body)
            }
            #expect(hits.count == 5)
            #expect(connections.openedCount == 1, "sequential requests reuse one kept-alive connection")

            // No body at all.
            let empty = try await connections.execute(
                method: .POST, url: "http://127.0.0.1:\(port)/echo", headers: [("Authorization", "Bearer s3cret")],
                body: nil, timeout: .seconds(5), responseSizeMax: 1024)
            #expect(empty.status == 200 && empty.body.isEmpty)
            #expect(connections.openedCount == 1)

            // Concurrent requests each get a connection; afterwards they are all kept.
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await connections.execute(
                            method: .POST, url: "http://127.0.0.1:\(port)/echo", headers: [], body: [1, 2, 3],
                            timeout: .seconds(5), responseSizeMax: 1024).status
                    }
                }
                for try await status in group { #expect(status == 200) }
            }
            #expect(connections.openedCount <= 5)
        }
    }

    @Test("the headers reach the server: Host, Content-Type and the bearer token")
    func headers() async throws {
        let hits = Counter()
        let seen = Recorder<String>()
        let router = makeEchoServer(hits: hits)
        router.post("/headers") { request, _ -> String in
            seen.append("\(request.head.authority ?? "-") \(request.headers[.contentType] ?? "-") \(request.headers[.authorization] ?? "-")")
            _ = try await request.body.collect(upTo: 1024)
            return "ok"
        }
        try await withLiveServer(router) { port in
            let connections = HTTP1Connections()
            defer { connections.shutdown() }
            let reply = try await connections.execute(
                method: .POST, url: "http://127.0.0.1:\(port)/headers",
                headers: [("Content-Type", "application/json"), ("Authorization", "Bearer s3cret")],
                body: Array("{}".utf8), timeout: .seconds(5), responseSizeMax: 1024)
            #expect(reply.status == 200)
            #expect(seen.all == ["127.0.0.1:\(port) application/json Bearer s3cret"])
        }
    }

    @Test("failures are sorted as AsyncHTTPClient's are: unreachable, timed out, too large, rejected status")
    func failures() async throws {
        let hits = Counter()
        try await withLiveServer(makeEchoServer(hits: hits)) { port in
            let connections = HTTP1Connections()
            defer { connections.shutdown() }
            let base = "http://127.0.0.1:\(port)"

            await #expect {
                try await connections.execute(method: .GET, url: base + "/large", headers: [], body: nil, timeout: .seconds(5), responseSizeMax: 1000)
            } throws: { ($0 as? WireCallError)?.kind == .invalidResponse }

            // Timed out, not answered: the deadline, not the server (5 s), ended the call.
            await #expect {
                try await connections.execute(method: .GET, url: base + "/slow", headers: [], body: nil, timeout: .milliseconds(200), responseSizeMax: 1000)
            } throws: { ($0 as? WireCallError)?.kind == .timedOut }

            let missing = try await connections.execute(method: .GET, url: base + "/missing", headers: [], body: nil, timeout: .seconds(5), responseSizeMax: 1000)
            #expect(missing.status == 404 && missing.body == Array("{}".utf8))

            // `Connection: close` is honoured: the next request opens a new connection.
            let opened = connections.openedCount
            let bye = try await connections.execute(method: .GET, url: base + "/bye", headers: [], body: nil, timeout: .seconds(5), responseSizeMax: 1000)
            #expect(bye.status == 200 && bye.body == Array("bye".utf8))
            _ = try await connections.execute(method: .POST, url: base + "/echo", headers: [], body: [1], timeout: .seconds(5), responseSizeMax: 1000)
            #expect(connections.openedCount == opened + 1)
        }

        // A refused connection fails at once; the deadline is long so that a loaded machine's
        // slowness cannot turn the refusal into a timeout.
        let refusing = try RefusingPort()
        defer { withExtendedLifetime(refusing) {} }
        let closedPort = refusing.port
        let connections = HTTP1Connections()
        await #expect {
            try await connections.execute(method: .POST, url: "http://127.0.0.1:\(closedPort)/echo", headers: [], body: [1], timeout: .seconds(60), responseSizeMax: 1000)
        } throws: { ($0 as? WireCallError)?.kind == .unreachable }
        await #expect {
            try await connections.execute(method: .POST, url: "https://127.0.0.1:\(closedPort)/echo", headers: [], body: [1], timeout: .seconds(60), responseSizeMax: 1000)
        } throws: { ($0 as? WireCallError)?.kind == .unreachable }
    }

    @Test("a kept connection the server closed while idle is replaced without failing the request")
    func staleConnection() async throws {
        // The server closes each connection after answering, without saying so in a header: the
        // client keeps the connection and finds it closed on the next request.
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AnswerOnceThenClose())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress?.port ?? 0
        let connections = HTTP1Connections()
        for _ in 0..<3 {
            // A deadline far beyond a loopback exchange: under the whole suite's parallel load the
            // event loops can be slow, and this test is about reconnecting, not about speed.
            let reply = try await connections.execute(method: .POST, url: "http://127.0.0.1:\(port)/x", headers: [], body: [1], timeout: .seconds(30), responseSizeMax: 1000)
            #expect(reply.status == 200 && reply.body == Array("ok".utf8))
        }
        #expect(connections.openedCount == 3)
        connections.shutdown()
        try await server.close()
    }

    @Test("cancelling the calling task ends the call at once")
    func cancellation() async throws {
        let hits = Counter()
        try await withLiveServer(makeEchoServer(hits: hits)) { port in
            let connections = HTTP1Connections()
            defer { connections.shutdown() }
            let call = Task {
                try await connections.execute(method: .GET, url: "http://127.0.0.1:\(port)/slow", headers: [], body: nil, timeout: .seconds(30), responseSizeMax: 1000)
            }
            try await Task.sleep(for: .milliseconds(100))
            call.cancel()
            // Cancelled, not answered: the cancellation, not the server (5 s), ended the call.
            await #expect { try await call.value } throws: { ($0 as? WireCallError)?.kind == .cancelled }
        }
    }
}

/// Answers the first request on a connection with `200 ok`, keep-alive implied, and closes the
/// connection as soon as the answer is written: a server whose idle timeout ran out at once.
private final class AnswerOnceThenClose: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The request's bytes so far: its head and one-byte body may arrive in more than one read.
    private var received: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.append(contentsOf: unwrapInboundIn(data).readableBytesView)
        guard let headEnd = received.firstRange(of: Array("\r\n\r\n".utf8)), received.endIndex > headEnd.upperBound else { return }
        received = []
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }
}
