import ArbiterHTTP
public import ArbiterParticipantPostgres
import HTTPTypes
import Hummingbird
import PostgresNIO

/// The bank's own HTTP API on PostgreSQL, the same as ``BankRoutes``: `POST /accounts`,
/// `GET /accounts/{id}`, `GET /accounts`. `reserved` is always 0: a debit in doubt is made inside
/// its prepared transaction, invisible until it commits.
public enum PostgresBankRoutes {
    /// Adds the routes to a PostgreSQL node's router (pass it as the node's `routes` closure).
    public static func add(to routes: PostgresParticipantRoutes) {
        let client = routes.client
        let logger = routes.logger
        let bodySizeMax = routes.limits.bodySizeMax

        routes.router.post("/accounts") { request, _ -> Response in
            let body = try await request.decodeWire(OpenAccountRequest.self, bodySizeMax: bodySizeMax)
            if let problem = Account.problem(withID: body.id) {
                throw APIError.invalidValue("id", "`id`: \(problem)")
            }
            guard (0...BankOperation.amountMax).contains(body.balance) else {
                throw APIError.invalidValue("balance", "`balance` must be 0 to \(BankOperation.amountMax) cents; got \(body.balance)")
            }
            var inserted = false
            for try await _ in try await client.query(
                "INSERT INTO bank_accounts (id, balance) VALUES (\(body.id), \(body.balance)) ON CONFLICT (id) DO NOTHING RETURNING id",
                logger: logger) {
                inserted = true
            }
            guard inserted else {
                throw APIError(status: .conflict, code: "account_exists", message: "account \(body.id) already exists", field: "id")
            }
            return try WireResponse.json(Account(id: body.id, balance: body.balance, reserved: 0), status: .created)
        }

        routes.router.get("/accounts/:id") { _, context -> Response in
            let id = context.parameters.get("id") ?? ""
            for try await (id, balance) in try await client.query(
                "SELECT id, balance FROM bank_accounts WHERE id = \(id)", logger: logger).decode((String, Int).self) {
                return try WireResponse.json(Account(id: id, balance: balance, reserved: 0))
            }
            throw APIError.notFound("no account \(id)", field: "id")
        }

        routes.router.get("/accounts") { _, _ -> Response in
            var accounts: [Account] = []
            for try await (id, balance) in try await client.query(
                "SELECT id, balance FROM bank_accounts ORDER BY id", logger: logger).decode((String, Int).self) {
                accounts.append(Account(id: id, balance: balance, reserved: 0))
            }
            return try WireResponse.json(AccountList(accounts: accounts))
        }
    }
}
