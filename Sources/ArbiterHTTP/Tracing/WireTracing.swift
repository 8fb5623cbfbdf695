public import Tracing
import Foundation

/// The bridge between the wire's `traceparent` and the process's tracer
/// (`InstrumentationSystem.tracer`, a no-op unless the process bootstraps one).
///
/// Incoming: ``context(traceparent:)`` parses the header with ``TraceParent`` and hands it to the
/// tracer's `extract`, so that a W3C tracer (swift-otel) makes the spans that follow children of the
/// sender's span. Outgoing: ``traceparent(for:)`` asks the tracer to `inject` the current span; when
/// it writes no `traceparent` (no tracer, or one with its own headers) the incoming value is passed
/// on unchanged, as a proxy would: the trace id still reaches every participant.
///
/// Without a tracer and without an incoming header, both return `nil` after a dictionary lookup:
/// nothing is allocated per message.
public enum WireTracing {
    /// The context for work caused by a request that carried `traceparent` (the header's value, or
    /// `nil`); `nil` when there is nothing to carry: no valid header and no tracer to record spans.
    ///
    /// A request with the header twice (one HTTP layer adding its own) arrives here as `a, b`: the
    /// first value counts.
    public static func context(traceparent header: String?, base: ServiceContext = .topLevel) -> ServiceContext? {
        let value = header.map { $0.split(separator: ",", maxSplits: 1).first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? $0 }
        guard let value, let parent = TraceParent(value) else {
            return isTracing ? base : nil
        }
        var context = base
        context.traceParent = parent
        InstrumentationSystem.instrument.extract([TraceParent.headerName: value], into: &context, using: DictionaryCarrier())
        return context
    }

    /// The `traceparent` to send with a request made in `context`, or `nil` when it has none.
    public static func traceparent(for context: ServiceContext?) -> String? {
        guard let context else { return nil }
        if isTracing {
            var carrier: [String: String] = [:]
            InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryCarrier())
            if let value = carrier[TraceParent.headerName], TraceParent(value) != nil { return value }
        }
        return context.traceParent?.description
    }

    /// Whether the process has a tracer that records spans.
    public static var isTracing: Bool { !(InstrumentationSystem.tracer is NoOpTracer) }

    /// Runs `operation` in a span named `name`, child of `context`; with no context (nothing to trace)
    /// it runs it directly.
    public static func withSpan<T, E: Error>(
        _ name: String, context: ServiceContext?, ofKind kind: SpanKind = .internal,
        _ operation: (ServiceContext?) async throws(E) -> T
    ) async throws(E) -> T {
        guard let context, isTracing else { return try await operation(context) }
        let span = InstrumentationSystem.tracer.startSpan(name, context: context, ofKind: kind)
        defer { span.end() }
        do {
            return try await operation(span.context)
        } catch {
            span.recordError(error)
            throw error
        }
    }

    /// Starts a span named `name`, child of `context`, when there is a tracer and a context; the
    /// caller ends it.
    public static func startSpan(_ name: String, context: ServiceContext?, ofKind kind: SpanKind = .internal) -> (any Span)? {
        guard let context, isTracing else { return nil }
        return InstrumentationSystem.tracer.startSpan(name, context: context, ofKind: kind)
    }
}

/// Reads and writes a `[String: String]` of header names to values.
public struct DictionaryCarrier: Injector, Extractor {
    public init() {}
    public func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
    public func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}
