import ArbiterCore
import ArbiterTesting
@testable import ArbiterHTTP
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
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
/// server afterwards by graceful shutdown — not by cancelling its task: a server task cancelled
/// while a connection is being accepted drops that connection unserved, and NIO traps on it in
/// debug builds ("Deinited NIOAsyncWriter without calling finish()", apple/swift-nio#2637).
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
    let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: testLogger("test-server-group"))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: Result<T, any Error>
        do {
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next(), port > 0 else {
                throw TestFailure("the test server did not report its port")
            }
            result = .success(try await body(port))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        await stopWithin(.seconds(3), &tasks)
        return try result.get()
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
