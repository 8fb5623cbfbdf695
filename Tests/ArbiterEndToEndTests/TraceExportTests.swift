import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import AsyncHTTPClient
import BankCluster
import Foundation
import Testing

/// One span as `Tests/Support/otlp_receiver.py` writes it, decoded from the OTLP protobuf that a
/// process exported.
struct ExportedSpan: Decodable, Hashable {
    var service: String?
    var instance: String?
    var traceId: String
    var spanId: String
    var parentSpanId: String
    var name: String
    var start: UInt64
    var end: UInt64
}

/// Whether python3 can decode OTLP: `.ci/run` installs the package, so CI never skips.
let otlpReceiverRuns: Bool = {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import opentelemetry.proto.collector.trace.v1.trace_service_pb2"]
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}()

/// The real processes export their spans by OTLP/HTTP (swift-otel, `--otlp-endpoint`) to a
/// receiver that decodes them with the reference protobuf definitions (PyPI's
/// `opentelemetry-proto`), as a collector would.
@Suite("End to end: traces exported by OTLP/HTTP", .serialized,
       .enabled(if: otlpReceiverRuns, "needs python3 with opentelemetry-proto (python3 -m pip install opentelemetry-proto)"))
struct TraceExportTests {
    static let support = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Support").path

    static func spans(in file: String) throws -> [ExportedSpan] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { try JSONDecoder().decode(ExportedSpan.self, from: Data($0.utf8)) }
    }

    @Test("a transfer's traceparent reaches both banks: the coordinator's and the banks' spans arrive at an OTLP receiver in the client's trace, each bank's under the coordinator's request span")
    func transferTraceAcrossThreeProcesses() async throws {
        let root = try TemporaryDirectory(prefix: "arbiter-e2e-otlp")
        let spansFile = root.path + "/spans.jsonl"
        let receiver = try ManagedProcess(
            name: "otlp receiver", executable: "/usr/bin/env",
            arguments: ["python3", Self.support + "/otlp_receiver.py", "--out", spansFile], logFile: root.path + "/receiver.log")
        defer { receiver.kill() }
        let endpoint = "http://127.0.0.1:" + (try await receiver.waitFor(#"otlp receiver listening on (\d+)"#))
        let cluster = try BankCluster(options: .init(
            nodeCount: 2, root: root.path + "/cluster", launcher: .builtProducts(),
            coordinatorArguments: ["--otlp-endpoint", endpoint], nodeArguments: ["--otlp-endpoint", endpoint],
            // Export every 100 ms rather than swift-otel's default 5 s.
            environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"]))
        do {
            try await cluster.start()
            try await cluster.openAccount("alice", balance: 1_000, at: 0)
            try await cluster.openAccount("bob", balance: 1_000, at: 1)

            // The client's span: a traceparent made here, as any HTTP client in any language would.
            let traceID = TraceParent.randomID(hexDigits: 32)
            let clientSpan = TraceParent.randomID(hexDigits: 16)
            var request = HTTPClientRequest(url: cluster.coordinatorURL + "/v1/transactions")
            request.method = .POST
            request.headers.add(name: "Authorization", value: cluster.clientToken.authorizationHeaderValue)
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "traceparent", value: "00-\(traceID)-\(clientSpan)-01")
            request.body = .bytes(Array(#"""
                {"id": "traced-transfer", "wait": "completion", "branches": [
                  {"participant": "\#(cluster.participant(0).rawValue)", "payload": {"op": "debit", "account": "alice", "amount": 100}},
                  {"participant": "\#(cluster.participant(1).rawValue)", "payload": {"op": "credit", "account": "bob", "amount": 100}}]}
                """#.utf8))
            let response = try await cluster.httpClient.execute(request, timeout: .seconds(30))
            let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(response.status == .ok && body.contains(#""outcome":"committed""#), "\(body)")

            // Every process exports its spans within a few of its 100 ms rounds.
            var trace: [ExportedSpan] = []
            try await eventually("the coordinator's and both banks' spans of the trace arrived", timeout: .seconds(60), poll: .milliseconds(100)) {
                trace = try Self.spans(in: spansFile).filter { $0.traceId == traceID }
                let names = Set(trace.map { "\($0.service ?? "") \($0.name)" })
                let banksApplied = Set(trace.filter { $0.name == "apply" }.map(\.instance)).count
                return ["arbiter-coordinator submit", "arbiter-coordinator prepare", "arbiter-coordinator decision.force",
                        "arbiter-coordinator phase2", "bank-node stage", "bank-node apply"].allSatisfy(names.contains)
                    && banksApplied == 2
            }

            // The tree: client → submit → prepare / decision.force / phase2 at the coordinator, and
            // each bank's stage under a prepare, its apply under a phase 2 request.
            let coordinator = trace.filter { $0.service == "arbiter-coordinator" }
            let submit = try #require(coordinator.first { $0.name == "submit" })
            #expect(submit.parentSpanId == clientSpan)
            for name in ["prepare", "decision.force", "phase2"] {
                let spans = coordinator.filter { $0.name == name }
                #expect(!spans.isEmpty && spans.allSatisfy { $0.parentSpanId == submit.spanId }, "\(name): \(spans)")
            }
            #expect(coordinator.filter { $0.name == "prepare" }.count == 2)
            let prepares = Set(coordinator.filter { $0.name == "prepare" }.map(\.spanId))
            let phaseTwo = Set(coordinator.filter { $0.name == "phase2" }.map(\.spanId))
            let banks = trace.filter { $0.service == "bank-node" }
            #expect(Set(banks.map(\.instance)).count == 2)
            for span in banks where span.name == "stage" { #expect(prepares.contains(span.parentSpanId), "\(span)") }
            for span in banks where span.name == "apply" { #expect(phaseTwo.contains(span.parentSpanId), "\(span)") }
            #expect(trace.allSatisfy { $0.end >= $0.start })

            // The picture of the trace (docs/coordinator.md, "Tracing"); with
            // ARBITER_UPDATE_SCREENSHOTS=1 it replaces docs/images/trace.svg.
            let picture = root.path + "/trace.svg"
            let drawer = try ManagedProcess(
                name: "trace timeline", executable: "/usr/bin/env",
                arguments: ["python3", Self.support + "/trace_timeline.py", spansFile, traceID, picture])
            try await drawer.waitForExit(timeout: .seconds(30))
            #expect(drawer.exitStatus == 0, "\(drawer.log)")
            let svg = try String(contentsOfFile: picture, encoding: .utf8)
            #expect(svg.contains("<svg") && svg.contains("decision.force") && svg.contains("apply"))
            if ProcessInfo.processInfo.environment["ARBITER_UPDATE_SCREENSHOTS"] == "1" {
                let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .deletingLastPathComponent().appendingPathComponent("docs/images/trace.svg")
                try svg.write(to: docs, atomically: true, encoding: .utf8)
            }
        } catch {
            root.keep()
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    @Test("an --otlp-endpoint that is not an http(s) URL is refused before the coordinator starts, naming the option")
    func badEndpointIsRefused() async throws {
        let root = try TemporaryDirectory(prefix: "arbiter-otlp-flag")
        let process = try ManagedProcess(name: "coordinator", executable: try builtProduct("arbiter"), arguments: [
            "coordinator", "--data", root.path, "--secret-file", root.path + "/absent", "--allow-any-participant",
            "--otlp-endpoint", "ftp://127.0.0.1:4318",
        ])
        try await process.waitForExit(timeout: .seconds(30))
        #expect(process.exitStatus == 64)
        #expect(process.log.contains("--otlp-endpoint must be an http or https URL"), "\(process.log)")
    }
}
