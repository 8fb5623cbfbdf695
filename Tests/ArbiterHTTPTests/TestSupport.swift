import ArbiterCore
@testable import ArbiterHTTP
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Counts handler runs across tasks.
final class Counter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// Records values across tasks.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
}

enum TestSecrets {
    static let protocolSecret = try! BearerSecret("protocol-s3cret")
    static let operatorSecret = try! BearerSecret("operator-s3cret")
}

/// A quiet logger for test servers.
func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return logger
}

/// Runs `router` on 127.0.0.1 with a port the OS chooses, hands the port to `body`, and stops the
/// server afterwards (by cancelling its task, which shuts it down gracefully).
func withLiveServer<T: Sendable>(
    _ router: Router<BasicRequestContext>,
    _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in
            continuation.yield(channel.localAddress?.port ?? 0)
            continuation.finish()
        },
        logger: testLogger("test-server")
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await app.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            group.cancelAll()
            throw TestFailure("the test server did not report its port")
        }
        do {
            let result = try await body(port)
            group.cancelAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A `TxID` from a literal known to be valid.
func txid(_ text: String) -> TxID { try! TxID(text) }

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
