public import ArbiterCore
public import ArbiterParticipant
public import GRDB

// The bank: Arbiter's reference participant. Each branch of a transfer debits or credits one
// account; the coordinator makes the debit and the credit of a transfer happen together or not at
// all. This file is the whole of the bank's two-phase-commit logic. It is the simplest correct
// participant, and docs/participant-guide.md walks through it.

// MARK: - The payload

/// One branch of a transfer: `{"op": "debit"|"credit", "account": "alice", "amount": 100}`, or a
/// whole transfer inside this bank: `{"op": "transfer", "account": "alice", "to": "bob", "amount": 100}`
/// (a single-branch transaction, which the coordinator commits in one phase).
///
/// Decoded by the participant library from the branch's JSON with the strict wire decoder; a
/// payload that does not decode (unknown `op`, amount not a positive integer, …) is refused with a
/// `no` vote naming the field, before the resource sees it.
public struct BankOperation: Decodable, Hashable, Sendable {
    /// What the branch does to its account.
    public enum Kind: String, Decodable, Hashable, Sendable {
        /// Take money out: reserved at prepare, taken at commit.
        case debit
        /// Put money in: applied at commit.
        case credit
        /// Move money between two accounts of this bank: reserved at prepare, moved at commit.
        case transfer
    }

    /// The largest amount one operation may move, in cents (10^15, ten trillion units), so that no
    /// sum of a balance and an amount can overflow 64-bit integers.
    public static let amountMax = 1_000_000_000_000_000

    /// Debit, credit or transfer.
    public var op: Kind
    /// The account's id (a transfer's source).
    public var account: String
    /// A transfer's destination account; `nil` for a debit or credit.
    public var to: String?
    /// How much, in cents; a positive integer.
    public var amount: Int

    /// Makes an operation (for clients and tests; the node decodes them).
    public init(op: Kind, account: String, to: String? = nil, amount: Int) {
        self.op = op
        self.account = account
        self.to = to
        self.amount = amount
    }

    private enum CodingKeys: String, CodingKey { case op, account, to, amount }

    /// Decodes and checks an operation: a known `op`, a valid account id, a positive amount.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        op = try container.decode(Kind.self, forKey: .op)
        account = try container.decode(String.self, forKey: .account)
        amount = try container.decode(Int.self, forKey: .amount)
        if let problem = Account.problem(withID: account) {
            throw DecodingError.dataCorruptedError(forKey: .account, in: container, debugDescription: problem)
        }
        to = try container.decodeIfPresent(String.self, forKey: .to)
        switch (op, to) {
        case (.transfer, nil):
            throw DecodingError.keyNotFound(CodingKeys.to, .init(codingPath: container.codingPath, debugDescription: "a transfer needs `to`"))
        case (.transfer, let to?):
            if let problem = Account.problem(withID: to) {
                throw DecodingError.dataCorruptedError(forKey: .to, in: container, debugDescription: problem)
            }
            if to == account {
                throw DecodingError.dataCorruptedError(forKey: .to, in: container, debugDescription: "a transfer needs two different accounts")
            }
        case (_, .some):
            throw DecodingError.dataCorruptedError(forKey: .to, in: container, debugDescription: "only a transfer has `to`")
        case (_, nil):
            break
        }
        guard (1...Self.amountMax).contains(amount) else {
            throw DecodingError.dataCorruptedError(forKey: .amount, in: container,
                debugDescription: "must be a positive number of cents, at most \(Self.amountMax); got \(amount)")
        }
    }
}

// MARK: - The resource

/// The bank's ``Resource``: accounts and reservations in the participant's SQLite database.
///
/// - A debit locks its account, checks that the balance minus what is already reserved covers the
///   amount, and reserves it (a `reservations` row); commit takes the money and drops the
///   reservation; abort drops the reservation.
/// - A credit locks its account (so that nothing else changes it while the transfer is in doubt)
///   and adds the money at commit; abort has nothing to undo.
///
/// The locks are the library's (`StageContext.lock`), kept in SQLite with the prepared record, so a
/// restart keeps both the reservation and the lock of a transaction in doubt.
public struct BankResource: Resource {
    /// Makes the resource.
    public init() {}

    /// The bank's tables: `accounts(id, balance)` and `reservations(txid, account, amount)`.
    ///
    /// The `CHECK`s are a second line of defence: the vote is what keeps balances non-negative.
    public func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("bank.v1") { db in
            try db.execute(sql: """
                CREATE TABLE accounts (
                    id TEXT PRIMARY KEY NOT NULL,
                    balance INTEGER NOT NULL CHECK (balance >= 0)
                ) STRICT;
                CREATE TABLE reservations (
                    txid TEXT PRIMARY KEY NOT NULL,
                    account TEXT NOT NULL REFERENCES accounts (id),
                    amount INTEGER NOT NULL CHECK (amount > 0)
                ) STRICT;
                CREATE INDEX reservations_by_account ON reservations (account);
                """)
        }
    }

    /// Prepare: lock the account, check, reserve. A `no` says why, for the client.
    public func stage(_ payload: BankOperation, in context: StageContext) throws -> Vote {
        // Lock first: from here until commit or abort, no other transaction stages against this
        // account, so what we read below cannot change under us. A held lock votes no at once.
        try context.lock(Account.lockKey(payload.account))
        guard let account = try Account.fetch(payload.account, in: context.db) else {
            return .no(reason: "no account \(payload.account)")
        }
        switch payload.op {
        case .debit, .transfer:
            if let to = payload.to {
                // The destination is locked and checked too: it must exist when the commit moves the money.
                try context.lock(Account.lockKey(to))
                guard try Account.fetch(to, in: context.db) != nil else { return .no(reason: "no account \(to)") }
            }
            let available = account.balance - account.reserved
            guard available >= payload.amount else {
                return .no(reason: "insufficient funds in \(account.id): balance \(account.balance), reserved \(account.reserved), amount \(payload.amount)")
            }
            try context.db.cachedStatement(sql: "INSERT INTO reservations (txid, account, amount) VALUES (?, ?, ?)").execute(
                arguments: [context.txid.rawValue, account.id, payload.amount])
        case .credit:
            // The commit must not fail, so refuse now what it could not apply.
            guard account.balance <= Int.max - payload.amount else {
                return .no(reason: "crediting \(payload.amount) would overflow the balance of \(account.id)")
            }
        }
        return .yes
    }

    /// Commit: move the money. Runs in the same local transaction that records `committed`.
    public func apply(_ payload: BankOperation, in context: OutcomeContext) throws {
        switch payload.op {
        case .debit:
            try context.db.cachedStatement(sql: "UPDATE accounts SET balance = balance - ? WHERE id = ?").execute(
                arguments: [payload.amount, payload.account])
            try dropReservation(of: context)
        case .credit:
            try context.db.cachedStatement(sql: "UPDATE accounts SET balance = balance + ? WHERE id = ?").execute(
                arguments: [payload.amount, payload.account])
        case .transfer:
            try context.db.cachedStatement(sql: "UPDATE accounts SET balance = balance - ? WHERE id = ?").execute(
                arguments: [payload.amount, payload.account])
            try context.db.cachedStatement(sql: "UPDATE accounts SET balance = balance + ? WHERE id = ?").execute(
                arguments: [payload.amount, payload.to])
            try dropReservation(of: context)
        }
    }

    /// Abort after prepare: release what was reserved. A credit staged nothing.
    public func discard(_ payload: BankOperation, in context: OutcomeContext) throws {
        try dropReservation(of: context)
    }

    private func dropReservation(of context: OutcomeContext) throws {
        try context.db.cachedStatement(sql: "DELETE FROM reservations WHERE txid = ?").execute(arguments: [context.txid.rawValue])
    }
}

// MARK: - Accounts

/// An account as the bank's API shows it: `{id, balance, reserved}` (cents).
public struct Account: Codable, Hashable, Sendable {
    /// The account's id.
    public var id: String
    /// The money in the account, in cents.
    public var balance: Int
    /// The part of the balance reserved by debits in doubt, in cents.
    public var reserved: Int

    /// Makes a value from its members.
    public init(id: String, balance: Int, reserved: Int) {
        self.id = id
        self.balance = balance
        self.reserved = reserved
    }

    /// The longest account id, in characters.
    public static let idLengthMax = 64

    /// What is wrong with `id` as an account id (1–64 characters from `[A-Za-z0-9._-]`), if anything.
    public static func problem(withID id: String) -> String? {
        guard (1...idLengthMax).contains(id.utf8.count) else {
            return "must have 1 to \(idLengthMax) characters; got \(id.utf8.count)"
        }
        let allowed = id.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        return allowed ? nil : "may only use the characters [A-Za-z0-9._-]"
    }

    /// The lock key of an account.
    static func lockKey(_ id: String) -> String { "account:\(id)" }

    private static let select = """
        SELECT a.id, a.balance, coalesce(sum(r.amount), 0)
        FROM accounts a LEFT JOIN reservations r ON r.account = a.id
        """

    /// The account `id` with what is reserved on it, or `nil`.
    static func fetch(_ id: String, in db: Database) throws -> Account? {
        // A cached statement: this runs for every stage, and compiling the join each time cost
        // more than running it.
        try Row.fetchOne(db.cachedStatement(sql: "\(select) WHERE a.id = ? GROUP BY a.id"), arguments: [id]).map(Account.init(row:))
    }

    /// Every account, by id.
    static func fetchAll(in db: Database) throws -> [Account] {
        try Row.fetchAll(db, sql: "\(select) GROUP BY a.id ORDER BY a.id").map(Account.init(row:))
    }

    private init(row: Row) {
        self.init(id: row[0], balance: row[1], reserved: row[2])
    }
}
