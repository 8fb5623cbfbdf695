#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// Bounds on a server's connections: how many may be open at once, how long one may sit idle,
/// and how long a request may take to arrive.
///
/// A connection beyond the cap is closed as soon as it is accepted, before anything else is set up
/// for it (no TLS handshake, no HTTP parser); the connections already open go on. The cap never
/// exceeds what the process's open-files limit leaves after a reserve for the database and the
/// service's own outgoing connections (``effectiveConnectionsMax()``), so that a flood of
/// connections cannot take the descriptors the service needs to keep working.
public struct ConnectionLimits: Sendable, Hashable {
    /// The most connections open at once. Default 1024, lowered to fit the open-files limit.
    public var connectionsMax: Int
    /// How long a connection may stay open with no request under way (none being read, none
    /// being answered) before the server closes it. Default 75 s: longer than the 60 s for which
    /// Arbiter's clients keep an idle connection (``HTTPClientSettings/idleTimeout``), so that
    /// the client, not the server, normally ends it.
    public var idleTimeout: Duration
    /// How long a request may take to arrive in full, head and body, from its first byte (for a
    /// new TLS connection, from the first byte of the handshake). A client that sends part of a
    /// request and stops, or trickles it, is cut off then. Default 10 s.
    public var requestReadTimeout: Duration

    public init(connectionsMax: Int = 1024, idleTimeout: Duration = .seconds(75), requestReadTimeout: Duration = .seconds(10)) {
        self.connectionsMax = connectionsMax
        self.idleTimeout = idleTimeout
        self.requestReadTimeout = requestReadTimeout
    }

    /// The problem with these limits, if there is one, phrased in terms of the command-line flags.
    public func problem() -> String? {
        if connectionsMax < 1 { return "--connections-max must be at least 1, got \(connectionsMax)" }
        if idleTimeout <= .zero { return "--idle-timeout-ms must be positive" }
        if requestReadTimeout <= .zero { return "--request-read-timeout-ms must be positive" }
        return nil
    }

    /// The process's soft limit on open files (`RLIMIT_NOFILE`), or `nil` when it cannot be read
    /// or is unlimited.
    public static func openFilesLimit() -> Int? {
        var limits = rlimit()
        #if os(Linux)
        let status = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limits)
        #else
        let status = getrlimit(RLIMIT_NOFILE, &limits)
        #endif
        // RLIM_INFINITY is the largest value: "unlimited" falls out with everything over Int.max.
        guard status == 0, limits.rlim_cur < rlim_t(Int.max) else { return nil }
        return Int(limits.rlim_cur)
    }

    /// The descriptors kept out of the connection cap for everything else the process opens: the
    /// database (SQLite's file, journal and shared memory), the event loops, log files, and the
    /// service's outgoing connections. A quarter of the limit, and at least 64.
    public static func reservedDescriptors(openFilesLimit: Int) -> Int {
        max(64, openFilesLimit / 4)
    }

    /// ``connectionsMax``, lowered when the open-files limit minus the reserve is smaller; at
    /// least 1.
    public func effectiveConnectionsMax(openFilesLimit: Int? = ConnectionLimits.openFilesLimit()) -> Int {
        guard let openFilesLimit else { return connectionsMax }
        return max(1, min(connectionsMax, openFilesLimit - Self.reservedDescriptors(openFilesLimit: openFilesLimit)))
    }
}

extension ConnectionLimits {
    /// Accepted connections beyond the cap that may wait to be closed: the cap refuses a
    /// connection on the event loop that will own it, a hop after the accept, so a fast flood has
    /// a few accepted but not yet closed at any moment.
    public static let refusalsInFlightMax = 16

    /// For `ApplicationConfiguration(availableConnectionsDelegate:)`: the server stops accepting
    /// (the kernel queues new connections) while ``effectiveConnectionsMax()`` plus
    /// ``refusalsInFlightMax`` accepted connections are open. The cap closes connections over it
    /// at once; this bounds the descriptors a flood holds while they are being closed.
    public func acceptCeiling(logger: Logger) -> MaximumAvailableConnections {
        MaximumAvailableConnections(effectiveConnectionsMax() + Self.refusalsInFlightMax, logger: logger)
    }
}

/// The HTTP server of an Arbiter service: HTTP/1.1, with TLS when ``TLSSettings`` say so, and
/// the ``ConnectionLimits`` enforced on every connection.
public enum ServerTransport {
    /// The Hummingbird server builder to give `Application(router:server:...)`.
    ///
    /// - Throws: ``TLSSetupError`` when the TLS files cannot be read or do not go together.
    public static func builder(tls: TLSSettings?, limits: ConnectionLimits, logger: Logger) throws -> HTTPServerBuilder {
        let gauge = ConnectionGauge(max: limits.effectiveConnectionsMax(), logger: logger)
        let tlsConfiguration = try tls.flatMap { tls throws(TLSSetupError) in tls.servesTLS ? try tls.serverConfiguration() : nil }
        logger.debug("server transport", metadata: [
            "tls": "\(tlsConfiguration != nil)", "connectionsMax": "\(gauge.max)",
            "idleTimeout": "\(limits.idleTimeout)", "requestReadTimeout": "\(limits.requestReadTimeout)",
        ])
        return HTTPServerBuilder { responder in
            let http = HTTP1Channel(responder: responder)
            if let tlsConfiguration {
                return GuardedChannel(base: try TLSChannel(http, tlsConfiguration: tlsConfiguration), gauge: gauge, limits: limits)
            }
            return GuardedChannel(base: http, gauge: gauge, limits: limits)
        }
    }
}

/// Counts a server's open connections and admits new ones while under the cap.
final class ConnectionGauge: Sendable {
    let max: Int
    private let open = Atomic<Int>(0)
    private let refused = Atomic<Int>(0)
    private let logger: Logger

    init(max: Int, logger: Logger) {
        self.max = max
        self.logger = logger
    }

    /// Counts a new connection in when there is room for it.
    func admit() -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue <= max { return true }
        open.wrappingSubtract(1, ordering: .relaxed)
        let count = refused.wrappingAdd(1, ordering: .relaxed).newValue
        // A flood refuses thousands: say so at the first and then at every power of two.
        if count & (count - 1) == 0 {
            logger.warning("refused connections over the cap", metadata: ["connectionsMax": "\(max)", "refused": "\(count)"])
        }
        return false
    }

    /// Counts a closed connection out.
    func release() {
        open.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// A child channel that admits a connection only under the cap and puts the idle and
/// request-read deadlines on it, around `base` (HTTP/1.1, with or without TLS).
struct GuardedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let gauge: ConnectionGauge
    let limits: ConnectionLimits

    struct Refused: Error {}

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard gauge.admit() else {
            // Failing the setup means the server never sees the connection; closing it here is
            // what frees its descriptor.
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        let gauge = self.gauge
        channel.closeFuture.whenComplete { _ in gauge.release() }
        let idleTimeout = TimeAmount(limits.idleTimeout)
        let requestReadTimeout = TimeAmount(limits.requestReadTimeout)
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            // Set up before the channel is registered: no byte has been read yet.
            let deadlines = ConnectionDeadlines(idleTimeout: idleTimeout, requestReadTimeout: requestReadTimeout)
            let operations = channel.pipeline.syncOperations
            // Just after the HTTP decoder, where requests and responses are NIOHTTP1 parts.
            let decoder = try operations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try operations.addHandler(deadlines, position: .after(decoder.handler))
            // First in the pipeline, so that it sees every byte, TLS records included.
            try operations.addHandler(ByteArrival(deadlines: deadlines), position: .first)
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Tells ``ConnectionDeadlines`` when bytes arrive, before anything decodes them.
final class ByteArrival: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let deadlines: ConnectionDeadlines

    init(deadlines: ConnectionDeadlines) { self.deadlines = deadlines }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadlines.bytesArrived(context: context)
        context.fireChannelRead(data)
    }
}

/// Closes a connection that stays idle past the idle timeout, or whose request takes longer than
/// the request-read timeout to arrive from its first byte.
///
/// A connection is idle when no request is being read or answered. Bytes arriving on an idle
/// connection start the request-read clock; the request's end stops it, and the connection is
/// idle again once every request read has been answered. Bytes that arrive while a request is
/// being answered (a pipelined request) start the clock when the answer ends.
final class ConnectionDeadlines: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart

    private enum Clock { case idle, requestRead }

    private let idleTimeout: TimeAmount
    private let requestReadTimeout: TimeAmount
    private var timer: (clock: Clock, task: Scheduled<Void>)?
    /// Requests whose head has been read and whose answer has not ended.
    private var requestsOpen = 0
    private var readingRequest = false
    /// Bytes arrived while a request was being answered, not yet known to be part of one read.
    private var bytesWhileAnswering = false
    private var context: ChannelHandlerContext?

    init(idleTimeout: TimeAmount, requestReadTimeout: TimeAmount) {
        self.idleTimeout = idleTimeout
        self.requestReadTimeout = requestReadTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Bytes may have arrived (and started the request-read clock) before this handler was
        // added to the pipeline; otherwise the connection starts idle.
        if timer == nil { start(.idle) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    /// Called by ``ByteArrival`` on the same event loop.
    func bytesArrived(context: ChannelHandlerContext) {
        if readingRequest { return }
        if requestsOpen > 0 {
            bytesWhileAnswering = true
            return
        }
        if timer?.clock != .requestRead { start(.requestRead) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            readingRequest = true
            requestsOpen += 1
            if timer?.clock != .requestRead { start(.requestRead) }
        case .body:
            break
        case .end:
            readingRequest = false
            bytesWhileAnswering = false
            // Answered before its body was read (a refusal): the connection is idle now.
            if requestsOpen == 0 { start(.idle) } else { stop() }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            requestsOpen = max(0, requestsOpen - 1)
            if requestsOpen == 0 && !readingRequest {
                start(bytesWhileAnswering ? .requestRead : .idle)
                bytesWhileAnswering = false
            }
        }
        context.write(data, promise: promise)
    }

    private func start(_ clock: Clock) {
        stop()
        // Before the handler is in the pipeline the context is not known yet: the clock starts
        // in handlerAdded.
        guard let context else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(in: clock == .idle ? idleTimeout : requestReadTimeout) {
            bound.value.close(promise: nil)
        }
        timer = (clock, task)
    }

    private func stop() {
        timer?.task.cancel()
        timer = nil
    }
}
