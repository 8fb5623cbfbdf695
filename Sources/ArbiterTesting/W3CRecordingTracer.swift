public import InMemoryTracing
public import Tracing

/// A recording tracer that speaks W3C `traceparent`, for tests: swift-distributed-tracing's
/// `InMemoryTracer` records the spans, with ids of the W3C lengths in hex; `inject` writes the
/// current span as a `traceparent` and `extract` makes an incoming one the parent of the spans
/// that follow (InMemoryTracer's own propagation uses other header names).
///
/// The instrumentation system can be bootstrapped once per process, and every test target runs in
/// one process: ``shared`` is that one tracer. Tests tell their spans apart by trace id.
public struct W3CRecordingTracer: Tracer {
    public let recorder = InMemoryTracer(idGenerator: .init(
        nextTraceID: { W3CRecordingTracer.randomHex(32) },
        nextSpanID: { W3CRecordingTracer.randomHex(16) }))

    /// The process's tracer, bootstrapped on first use.
    public static let shared: W3CRecordingTracer = {
        let tracer = W3CRecordingTracer()
        InstrumentationSystem.bootstrap(tracer)
        return tracer
    }()

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> InMemorySpan {
        recorder.startSpan(operationName, context: context(), ofKind: kind, at: instant(), function: function, file: fileID, line: line)
    }

    public func forceFlush() {}

    public func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let span = context.inMemorySpanContext else { return }
        injector.inject("00-\(span.traceID)-\(span.spanID)-01", forKey: "traceparent", into: &carrier)
    }

    public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        guard let value = extractor.extract(key: "traceparent", from: carrier) else { return }
        let parts = value.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16 else { return }
        context.inMemorySpanContext = InMemorySpanContext(traceID: String(parts[1]), spanID: String(parts[2]), parentSpanID: nil)
    }

    /// The finished spans of the trace `traceID`.
    public func spans(ofTrace traceID: String) -> [FinishedInMemorySpan] {
        recorder.finishedSpans.filter { $0.spanContext.traceID == traceID }
    }

    static func randomHex(_ count: Int) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var generator = SystemRandomNumberGenerator()
        return String(decoding: (0..<count).map { index in
            index == 0 ? hex[1 + Int(generator.next() % 15)] : hex[Int(generator.next() & 0xf)]
        }, as: UTF8.self)
    }
}
