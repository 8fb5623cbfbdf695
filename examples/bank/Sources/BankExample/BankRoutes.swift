import ArbiterHTTP
public import ArbiterParticipant
import GRDB
import HTTPTypes
import Hummingbird

/// `POST /accounts` request: `{"id": "alice", "balance": 1000}` (cents).
public struct OpenAccountRequest: Codable, Hashable, Sendable {
    /// The new account's id: 1–64 characters from `[A-Za-z0-9._-]`.
    public var id: String
    /// The opening balance in cents, 0 or more.
    public var balance: Int

    /// Makes a value from its members, as they travel on the wire.
    public init(id: String, balance: Int) {
        self.id = id
        self.balance = balance
    }
}

/// `GET /accounts` response: `{"accounts": [...]}`, by id.
public struct AccountList: Codable, Hashable, Sendable {
    /// Every account.
    public var accounts: [Account]

    /// Makes a value from its members, as they travel on the wire.
    public init(accounts: [Account]) { self.accounts = accounts }
}

/// The bank's own HTTP API, beside the protocol endpoints (same protocol secret):
///
/// - `POST /accounts {id, balance}` opens an account → `201 {id, balance, reserved}`; `409` if it
///   exists;
/// - `GET /accounts/{id}` → `{id, balance, reserved}`, `404` if there is no such account;
/// - `GET /accounts` → `{"accounts": [...]}`.
///
/// Opening an account is a local write, not a distributed transaction: it concerns this bank only.
public enum BankRoutes {
    /// Adds the routes to a node's router (pass it as the node's `routes` closure).
    public static func add(to routes: ParticipantRoutes) {
        let database = routes.database
        let bodySizeMax = routes.limits.bodySizeMax

        routes.router.post("/accounts") { request, _ -> Response in
            let body = try await request.decodeWire(OpenAccountRequest.self, bodySizeMax: bodySizeMax)
            if let problem = Account.problem(withID: body.id) {
                throw APIError.invalidValue("id", "`id`: \(problem)")
            }
            guard (0...BankOperation.amountMax).contains(body.balance) else {
                throw APIError.invalidValue("balance", "`balance` must be 0 to \(BankOperation.amountMax) cents; got \(body.balance)")
            }
            let account = try await database.write { db -> Account in
                if try Account.fetch(body.id, in: db) != nil {
                    throw APIError(status: .conflict, code: "account_exists", message: "account \(body.id) already exists", field: "id")
                }
                try db.execute(sql: "INSERT INTO accounts (id, balance) VALUES (?, ?)", arguments: [body.id, body.balance])
                return Account(id: body.id, balance: body.balance, reserved: 0)
            }
            return try WireResponse.json(account, status: .created)
        }

        routes.router.get("/accounts/:id") { _, context -> Response in
            let id = context.parameters.get("id") ?? ""
            guard let account = try await database.read({ db in try Account.fetch(id, in: db) }) else {
                throw APIError.notFound("no account \(id)", field: "id")
            }
            return try WireResponse.json(account)
        }

        routes.router.get("/accounts") { _, _ -> Response in
            let accounts = try await database.read { db in try Account.fetchAll(in: db) }
            return try WireResponse.json(AccountList(accounts: accounts))
        }
    }
}
