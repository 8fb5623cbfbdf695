public import NIOCore
public import NIOHTTP1
public import NIOPosix
import NIOSSL
import Synchronization

/// Kept-alive HTTP/1.1 connections to `http` and `https` peers, for the protocol's hot requests: the
/// coordinator's batches to its participants and a client's submits.
///
/// AsyncHTTPClient, which carries every other call, sends a request with a body in two writes: the
/// head, flushed at once, and then the body from a later turn of the event loop. So the peer wakes
/// twice per request and reads twice, and the body leaves a turn later. On the benchmark's 2-core
/// machine that gap was 0.06–0.14 ms per hop at one client (`perf trace` of the write calls), on
/// each of the three hops of a transfer. Here a request's head, body and end go out in one flush:
/// one `writev`, one segment, one wake-up at the peer. The connection is also taken, when one is
/// idle, on the caller's own event loop, so a task that runs on an event loop
/// (``EventLoopExecutor``) sends and receives without waking another thread.
///
/// One exchange at a time per connection (no pipelining); a connection is reused once its answer
/// has been read in full, unless the peer said `Connection: close`. A request that fails on a
/// reused connection before any of its answer arrived (the peer closed the connection while it was
/// idle) is sent once more on a new one. That is safe here because every protocol request is
/// idempotent: a participant answers a repeated message as it did the first time, and a submit
/// carries its transaction id.
///
/// An `https` peer gets a TLS handler in front of the HTTP codec, with the ``ClientTLS`` given at
/// init (the system's trust roots when none was): the handshake happens once per connection, and
/// a kept-alive connection carries its requests without another.
public final class HTTP1Connections: Sendable {
    /// Where a connection goes.
    struct Endpoint: Hashable, Sendable {
        var host: String
        var port: Int
        /// `https`: the connection speaks TLS.
        var secure = false
    }

    /// A parsed `http[s]://host[:port]/path` URL.
    struct Target: Sendable {
        var endpoint: Endpoint
        /// The `Host` header's value.
        var authority: String
        var path: String
    }

    private struct Pool {
        var idle: [Endpoint: [Connection]] = [:]
        var isShutDown = false
        var opened = 0
    }

    private let group: any EventLoopGroup
    private let connectTimeout: Duration
    private let idleCountMax: Int
    private let tls: ClientTLS?
    private let pool = Mutex(Pool())

    /// - Parameters:
    ///   - settings: ``HTTPClientSettings/connectTimeout`` bounds connecting;
    ///     ``HTTPClientSettings/connectionsPerHostMax`` bounds the idle connections kept per peer.
    ///   - tls: How `https` peers are trusted and what certificate is presented to them; `nil`:
    ///     the system's trust roots and no client certificate.
    ///   - eventLoopGroup: Where the connections run; by default the group the services already
    ///     use (`MultiThreadedEventLoopGroup.singleton`).
    public init(
        settings: HTTPClientSettings = HTTPClientSettings(), tls: ClientTLS? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.group = eventLoopGroup
        self.connectTimeout = settings.connectTimeout
        self.idleCountMax = settings.connectionsPerHostMax
        self.tls = tls
    }

    /// Connections opened so far (for tests: reuse opens none).
    var openedCount: Int { pool.withLock { $0.opened } }

    /// Sends one request and reads its whole answer (at most `responseSizeMax` bytes of body).
    ///
    /// - Throws: ``WireCallError``: ``WireCallError/Kind/unreachable`` when connecting failed or
    ///   the connection broke before the answer, ``WireCallError/Kind/timedOut`` past `timeout`
    ///   (the connection is then closed: its answer may still come), ``WireCallError/Kind/invalidResponse``
    ///   for a body over the limit, ``WireCallError/Kind/cancelled`` when the task was cancelled.
    public func execute(
        method: HTTPMethod,
        url: String,
        headers: [(String, String)],
        body: [UInt8]?,
        timeout: Duration,
        responseSizeMax: Int
    ) async throws(WireCallError) -> WireCall.Reply {
        guard let target = Self.target(url) else {
            throw WireCallError(kind: .unreachable, message: "\(url) is not an http:// or https:// URL")
        }
        return try await execute(
            method: method, target: target, url: url, headers: headers, body: body, timeout: timeout, responseSizeMax: responseSizeMax)
    }

    /// ``execute(method:url:headers:body:timeout:responseSizeMax:)`` for a URL already parsed.
    func execute(
        method: HTTPMethod,
        target: Target,
        url: String,
        headers: [(String, String)],
        body: [UInt8]?,
        timeout: Duration,
        responseSizeMax: Int
    ) async throws(WireCallError) -> WireCall.Reply {
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: target.path)
        head.headers.reserveCapacity(headers.count + 2)
        head.headers.add(name: "Host", value: target.authority)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Content-Length", value: String(body?.count ?? 0))
        let request = Exchange.Request(head: head, body: body.map { ByteBuffer(bytes: $0) }, deadline: deadline, responseSizeMax: responseSizeMax)

        var reused = true
        while true {
            if Task.isCancelled { throw WireCallError(kind: .cancelled, message: "the call to \(url) was cancelled") }
            let connection: Connection
            if let idle = takeIdle(target.endpoint) {
                connection = idle
            } else {
                reused = false
                connection = try await connect(target.endpoint, deadline: deadline, url: url)
            }
            do {
                let answer = try await connection.exchange(request)
                if answer.keepAlive { giveBack(connection, to: target.endpoint) } else { connection.channel.close(promise: nil) }
                return WireCall.Reply(status: answer.status, body: answer.body)
            } catch {
                connection.channel.close(promise: nil)
                if Task.isCancelled { throw WireCallError(kind: .cancelled, message: "the call to \(url) was cancelled", cause: error) }
                switch error {
                case .closedBeforeAnswer where reused:
                    // The peer closed it while it was idle; a new connection will do.
                    reused = false
                    continue
                case .closedBeforeAnswer, .broken:
                    throw WireCallError(kind: .unreachable, message: "the connection to \(url) broke before the answer", cause: error)
                case .timedOut:
                    throw WireCallError(kind: .timedOut, message: "\(url) did not answer before the deadline", cause: error)
                case .tooLarge:
                    throw WireCallError(kind: .invalidResponse, message: "\(url) answered with a body over \(responseSizeMax) bytes", cause: error)
                }
            }
        }
    }

    /// Closes the idle connections and refuses to keep any more; exchanges under way finish.
    public func shutdown() {
        let idle = pool.withLock { pool -> [Connection] in
            pool.isShutDown = true
            defer { pool.idle = [:] }
            return pool.idle.values.flatMap { $0 }
        }
        for connection in idle { connection.channel.close(promise: nil) }
    }

    // MARK: Pool

    /// An idle connection to `endpoint`, one on the caller's event loop when there is one.
    private func takeIdle(_ endpoint: Endpoint) -> Connection? {
        pool.withLock { pool -> Connection? in
            guard var idle = pool.idle[endpoint], !idle.isEmpty else { return nil }
            let index = idle.lastIndex { $0.channel.eventLoop.inEventLoop } ?? idle.index(before: idle.endIndex)
            let connection = idle.remove(at: index)
            pool.idle[endpoint] = idle
            return connection
        }
    }

    private func giveBack(_ connection: Connection, to endpoint: Endpoint) {
        let kept = pool.withLock { pool -> Bool in
            guard !pool.isShutDown, connection.channel.isActive, pool.idle[endpoint, default: []].count < idleCountMax else { return false }
            pool.idle[endpoint, default: []].append(connection)
            return true
        }
        if !kept { connection.channel.close(promise: nil) }
    }

    private func forget(_ connection: Connection, at endpoint: Endpoint) {
        pool.withLock { pool in pool.idle[endpoint]?.removeAll { $0 === connection } }
    }

    private func connect(_ endpoint: Endpoint, deadline: NIODeadline, url: String) async throws(WireCallError) -> Connection {
        let connectTimeout = min(TimeAmount(self.connectTimeout), max(deadline - .now(), .zero))
        let tlsContext = endpoint.secure ? (tls ?? ClientTLS.systemDefault)?.context : nil
        if endpoint.secure && tlsContext == nil {
            throw WireCallError(kind: .unreachable, message: "no TLS configuration to reach \(url) with")
        }
        // SNI and the certificate's name check take a host name; for an IP address NIOSSL checks
        // the certificate against the address connected to.
        let serverHostname = SocketAddress.isIPAddress(endpoint.host) ? nil : endpoint.host
        let bootstrap = ClientBootstrap(group: group.any())
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Exchange())
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            throw WireCallError(kind: .unreachable, message: "could not connect to \(url)", cause: error)
        }
        let connection = Connection(channel: channel)
        pool.withLock { $0.opened += 1 }
        channel.closeFuture.whenComplete { [weak self] _ in self?.forget(connection, at: endpoint) }
        return connection
    }

    /// `http[s]://host[:port][/path]`, or nil for anything else (another scheme, no host, a bad port).
    static func target(_ url: String) -> Target? {
        var url = url
        return url.withUTF8 { bytes -> Target? in
            let secure = bytes.starts(with: "https://".utf8)
            guard secure || bytes.starts(with: "http://".utf8) else { return nil }
            let rest = bytes[(secure ? 8 : 7)...]
            let authorityEnd = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            guard case .success(let (host, port)) = URLAuthority.read(authority) else { return nil }
            let pathEnd = rest[authorityEnd...].firstIndex(of: UInt8(ascii: "#")) ?? rest.endIndex
            var path = String(decoding: rest[authorityEnd..<pathEnd], as: UTF8.self)
            if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
            return Target(
                endpoint: Endpoint(host: String(decoding: host, as: UTF8.self), port: port ?? (secure ? 443 : 80), secure: secure),
                authority: String(decoding: authority, as: UTF8.self), path: path)
        }
    }
}

/// One pooled connection.
final class Connection: Sendable {
    let channel: any Channel

    init(channel: any Channel) { self.channel = channel }

    /// Sends `request` and waits for its whole answer. Cancelling the task closes the connection.
    func exchange(_ request: Exchange.Request) async throws(Exchange.Failure) -> Exchange.Answer {
        let promise = channel.eventLoop.makePromise(of: Exchange.Answer.self)
        let outbound = Exchange.Outbound(request: request, promise: promise)
        // A write that never reaches the handler (the channel closed meanwhile) fails the exchange
        // here; completing a promise twice is a no-op, so a failure the handler reports wins.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in promise.fail(Exchange.Failure.closedBeforeAnswer) }
        channel.writeAndFlush(outbound, promise: written)
        do {
            return try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        } catch let failure as Exchange.Failure {
            throw failure
        } catch {
            throw .broken(error)
        }
    }
}

/// The handler at the end of a connection's pipeline: writes a request's head, body and end with
/// one flush, collects the answer, and fails the exchange if the connection closes, errs or
/// outlives the deadline first.
final class Exchange: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Outbound
    typealias OutboundOut = HTTPClientRequestPart

    struct Request: Sendable {
        var head: HTTPRequestHead
        var body: ByteBuffer?
        var deadline: NIODeadline
        var responseSizeMax: Int
    }

    struct Outbound: Sendable {
        var request: Request
        var promise: EventLoopPromise<Answer>
    }

    struct Answer: Sendable {
        var status: Int
        var body: [UInt8]
        var keepAlive: Bool
    }

    enum Failure: Error, CustomStringConvertible {
        /// The connection closed before any of the answer arrived.
        case closedBeforeAnswer
        /// The connection broke, or the answer was not HTTP, after the answer began.
        case broken(any Error)
        case timedOut
        case tooLarge

        var description: String {
            switch self {
            case .closedBeforeAnswer: "the connection closed before the answer"
            case .broken(let error): "the connection broke: \(error)"
            case .timedOut: "no answer before the deadline"
            case .tooLarge: "the answer's body is over the size limit"
            }
        }
    }

    private struct Pending {
        var promise: EventLoopPromise<Answer>
        var responseSizeMax: Int
        var timer: Scheduled<Void>?
        var status: Int?
        var keepAlive = true
        var body: ByteBuffer?
    }

    private var pending: Pending?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outbound = unwrapOutboundIn(data)
        guard pending == nil, context.channel.isActive else {
            outbound.promise.fail(pending == nil ? Failure.closedBeforeAnswer : Failure.broken(ChannelError.inappropriateOperationForState))
            promise?.fail(ChannelError.inappropriateOperationForState)
            return
        }
        let request = outbound.request
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(deadline: request.deadline) {
            bound.value.handler.fail(.timedOut)
            bound.value.context.close(promise: nil)
        }
        pending = Pending(promise: outbound.promise, responseSizeMax: request.responseSizeMax, timer: timer)
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let body = request.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard pending != nil else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            // 1xx answers are interim; the real one follows.
            guard head.status.code >= 200 else { return }
            pending!.status = Int(head.status.code)
            pending!.keepAlive = head.isKeepAlive
        case .body(var part):
            let size = (pending!.body?.readableBytes ?? 0) + part.readableBytes
            guard size <= pending!.responseSizeMax else {
                fail(.tooLarge)
                context.close(promise: nil)
                return
            }
            if pending!.body == nil { pending!.body = part } else { pending!.body!.writeBuffer(&part) }
        case .end:
            guard let finished = pending, let status = finished.status else { return }
            pending = nil
            finished.timer?.cancel()
            let body = finished.body.map { Array($0.readableBytesView) } ?? []
            finished.promise.succeed(Answer(status: status, body: body, keepAlive: finished.keepAlive))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(pending?.status == nil ? .closedBeforeAnswer : .broken(ChannelError.eof))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(pending?.status == nil && Self.isClosure(error) ? .closedBeforeAnswer : .broken(error))
        context.close(promise: nil)
    }

    /// Whether `error` says only that the peer closed the connection: a socket error, or a TLS
    /// peer that closed without a close_notify (as servers do with idle connections).
    private static func isClosure(_ error: any Error) -> Bool {
        if error is IOError { return true }
        if case NIOSSLError.uncleanShutdown = error { return true }
        return false
    }

    private func fail(_ failure: Failure) {
        guard let failed = pending else { return }
        pending = nil
        failed.timer?.cancel()
        failed.promise.fail(failure)
    }
}

extension SocketAddress {
    /// Whether `host` is an IPv4 or IPv6 address rather than a name.
    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
