import ArbiterHTTP
import AsyncHTTPClient
import Foundation

/// `{id, balance, reserved}` as a bank node shows an account.
struct AccountView: Codable, Sendable {
    var id: String
    var balance: Int
    var reserved: Int
}

/// `GET /accounts`.
struct AccountListView: Codable, Sendable {
    var accounts: [AccountView]
}

/// `POST /accounts`.
struct OpenAccount: Codable, Sendable {
    var id: String
    var balance: Int
}

/// The calls the benchmark makes besides transfers: opening and listing accounts, reading metrics.
struct BankAPI: Sendable {
    var http: HTTPClient
    var secret: BearerSecret

    /// Opens accounts `0..<count` on `node`, each with `balance`, `concurrency` requests at a time.
    func openAccounts(on node: String, count: Int, balance: Int, concurrency: Int = 32) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var index = worker
                    while index < count {
                        let body = OpenAccount(id: LoadGenerator.accountID(index), balance: balance)
                        do {
                            _ = try await WireCall.call(
                                http, method: .POST, url: node + "/accounts", body: body, secret: secret,
                                timeout: .seconds(30), responseSizeMax: 1 << 16, as: AccountView.self)
                        } catch {
                            throw BenchError("opening account \(body.id) on \(node) failed: \(error.message)")
                        }
                        index += concurrency
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Every account of `node`.
    func accounts(on node: String) async throws -> [AccountView] {
        do {
            return try await WireCall.call(
                http, method: .GET, url: node + "/accounts", body: nil, secret: secret,
                timeout: .seconds(60), responseSizeMax: 256 << 20, as: AccountListView.self
            ).accounts
        } catch {
            throw BenchError("listing the accounts of \(node) failed: \(error.message)")
        }
    }

    /// The Prometheus samples of `GET base/metrics` without labels, by name; `nil` when the
    /// service has no metrics endpoint.
    func metrics(at base: String) async -> [String: Double]? {
        guard let reply = try? await WireCall.execute(
            http, method: .GET, url: base + "/metrics", body: nil, secret: secret,
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
