import NIOCore
import NIOPosix
import Synchronization

/// A TCP listener on loopback that accepts every connection, reads what it is sent and never
/// answers: a participant whose network stalls (the connection is up, the answer never comes).
final class SilentListener: Sendable {
    private let server: any Channel
    private let accepted: AcceptedChannels
    let port: Int

    private init(server: any Channel, accepted: AcceptedChannels, port: Int) {
        self.server = server
        self.accepted = accepted
        self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)" }
    /// How many connections it accepted.
    var acceptedCount: Int { accepted.all.count }

    static func start() async throws -> SilentListener {
        let accepted = AcceptedChannels()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                accepted.add(channel)
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return SilentListener(server: server, accepted: accepted, port: server.localAddress?.port ?? 0)
    }

    /// Closes the listener and every connection it accepted.
    func close() async {
        try? await server.close()
        for channel in accepted.all { try? await channel.close() }
    }
}

/// The connections a ``SilentListener`` accepted (added from event loops).
private final class AcceptedChannels: Sendable {
    private let channels = Mutex<[any Channel]>([])
    func add(_ channel: any Channel) { channels.withLock { $0.append(channel) } }
    var all: [any Channel] { channels.withLock { $0 } }
}
