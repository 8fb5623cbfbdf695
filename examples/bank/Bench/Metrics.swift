import ArbiterHTTP
import AsyncHTTPClient
import Foundation

/// Reads a service's Prometheus metrics.
struct MetricsReader: Sendable {
    var http: HTTPClient

    /// The Prometheus samples of `GET base/metrics` without labels, by name; `nil` when the
    /// service has no metrics endpoint.
    func metrics(at base: String) async -> [String: Double]? {
        guard let reply = try? await WireCall.execute(
            http, method: .GET, url: base + "/metrics", body: nil, secret: nil,
            timeout: .seconds(10), responseSizeMax: 16 << 20), reply.status == 200 else { return nil }
        var samples: [String: Double] = [:]
        for line in String(decoding: reply.body, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, !parts[0].contains("{"), let value = Double(parts[1]) else { continue }
            samples[String(parts[0])] = value
        }
        return samples
    }
}

/// A failure of the benchmark itself, with what to do about it.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
