import ArbiterRuntime
import Foundation
import Logging
import Synchronization
import Testing

@Suite("Log format")
struct LogFormatTests {
    @Test("JSON log lines parse, with time, level, label, message and metadata")
    func jsonLogLines() throws {
        let lines = LineCollector()
        var handler = JSONLogHandler(label: "arbiter.test") { lines.append($0) }
        handler.logLevel = .debug
        handler[metadataKey: "node"] = "a"
        let logger = Logger(label: "arbiter.test") { _ in handler }
        logger.info("quote \" and\nnewline", metadata: ["txid": "t-1", "list": ["x", "y"]])
        logger.debug("second")
        let collected = lines.lines
        #expect(collected.count == 2 && collected.allSatisfy { $0.hasSuffix("\n") && $0.dropLast().firstIndex(of: "\n") == nil })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(collected[0].utf8)) as? [String: Any])
        #expect(object["level"] as? String == "info")
        #expect(object["label"] as? String == "arbiter.test")
        #expect(object["message"] as? String == "quote \" and\nnewline")
        #expect((object["time"] as? String)?.hasSuffix("Z") == true)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["txid"] as? String == "t-1" && metadata["node"] as? String == "a")
        #expect(metadata["list"] as? [String] == ["x", "y"])
    }
}

final class LineCollector: Sendable {
    private let state = Mutex<[String]>([])
    func append(_ line: String) { state.withLock { $0.append(line) } }
    var lines: [String] { state.withLock { $0 } }
}
