public import ArgumentParser
import Foundation
public import Logging
import OTel
public import ServiceLifecycle
import Tracing

/// The trace-export flag every Arbiter server takes (`arbiter coordinator`, `bank-node`): with
/// `--otlp-endpoint URL` the process exports its spans by OTLP/HTTP (protobuf) through swift-otel;
/// without it tracing stays the no-op default and costs nothing. Add it with
/// `@OptionGroup var tracing: TracingOptions`, then run ``bootstrap(serviceName:instance:logger:)``'s
/// service beside the server's.
///
/// swift-otel's `OTEL_…` environment variables tune the exporter (`OTEL_BSP_SCHEDULE_DELAY`,
/// `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, …); only the trace
/// signal is set up: logs stay on standard error and metrics on `/metrics`.
public struct TracingOptions: ParsableArguments, Sendable {
    @Option(help: "Export traces by OTLP/HTTP (protobuf) to this collector, e.g. http://127.0.0.1:4318 (/v1/traces is appended when the URL has no path). Off when absent.")
    public var otlpEndpoint: String?

    public init() {}

    public func validate() throws {
        if otlpEndpoint != nil, tracesURL == nil {
            throw ValidationError("--otlp-endpoint must be an http or https URL with a host, got \(otlpEndpoint!)")
        }
    }

    /// Where the spans go: the endpoint as given when it has a path, else its `/v1/traces`.
    var tracesURL: String? {
        guard let otlpEndpoint, let url = URL(string: otlpEndpoint), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = url.host(), !host.isEmpty
        else { return nil }
        let path = url.path()
        guard path.isEmpty || path == "/" else { return otlpEndpoint }
        return otlpEndpoint.hasSuffix("/") ? otlpEndpoint + "v1/traces" : otlpEndpoint + "/v1/traces"
    }

    /// Makes swift-otel's tracer the process's tracer (W3C `traceparent` propagation, every span
    /// sampled unless `OTEL_TRACES_SAMPLER` says otherwise) and returns the service that batches
    /// and exports its spans, to run in the server's service group (a graceful shutdown exports
    /// what is left). `nil` when `--otlp-endpoint` is absent: nothing is bootstrapped.
    ///
    /// - Parameters:
    ///   - serviceName: the resource's `service.name` (`arbiter-coordinator`, `bank-node`).
    ///   - instance: the resource's `service.instance.id`, this process's name in the cluster.
    public func bootstrap(serviceName: String, instance: String, logger: Logger) throws -> (any Service)? {
        guard let tracesURL else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.resourceAttributes = ["service.instance.id": instance]
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.propagators = [.traceContext]
        configuration.traces.otlpExporter.endpoint = tracesURL
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        logger.info("exporting traces", metadata: ["otlp.endpoint": "\(tracesURL)"])
        return backend.service
    }
}
