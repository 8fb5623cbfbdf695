import ArbiterHTTP
import InMemoryTracing
import Tracing

// The same tracer as the coordinator tests' (one per test target, as each is its own process).

/// A recording tracer that speaks W3C `traceparent` (InMemoryTracer's own propagation uses other
/// header names): ids are hex of the W3C lengths, `inject` writes the current span as a
/// `traceparent`, `extract` makes the incoming one the parent of the spans that follow.
struct W3CRecordingTracer: Tracer {
    let recorder = InMemoryTracer(idGenerator: .init(
        nextTraceID: { TraceParent.randomID(hexDigits: 32) },
        nextSpanID: { TraceParent.randomID(hexDigits: 16) }))

    /// The tracer of this test process, bootstrapped on first use (the instrumentation system can be
    /// bootstrapped once per process). Tests filter its spans by their own trace id.
    static let shared: W3CRecordingTracer = {
        let tracer = W3CRecordingTracer()
        InstrumentationSystem.bootstrap(tracer)
        return tracer
    }()

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> InMemorySpan {
        recorder.startSpan(operationName, context: context(), ofKind: kind, at: instant(), function: function, file: fileID, line: line)
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let span = context.inMemorySpanContext, let parent = TraceParent(traceID: span.traceID, parentID: span.spanID) else { return }
        injector.inject(parent.description, forKey: TraceParent.headerName, into: &carrier)
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        guard let value = extractor.extract(key: TraceParent.headerName, from: carrier), let parent = TraceParent(value) else { return }
        context.inMemorySpanContext = InMemorySpanContext(traceID: parent.traceID, spanID: parent.parentID, parentSpanID: nil)
    }

    func spans(ofTrace traceID: String) -> [FinishedInMemorySpan] {
        recorder.finishedSpans.filter { $0.spanContext.traceID == traceID }
    }
}
