public import ArbiterCore
public import ArbiterParticipantPostgres
import PostgresNIO

// The bank on PostgreSQL: the same payload as the SQLite bank (BankResource.swift), its accounts in
// a PostgreSQL table, and each branch plain UPDATEs in a transaction that the participant library
// prepares. Nothing is reserved: the debit is made at once inside the prepared transaction, which
// holds the account's row lock until the coordinator's decision commits or rolls it back; until
// then other readers see the balance as it was.

/// The bank's resource on PostgreSQL (see `bank-node --postgres`).
public struct PostgresBankResource: PostgresResource {
    public typealias Payload = BankOperation

    /// Makes the resource.
    public init() {}

    /// The accounts: a balance in cents that a CHECK keeps from going negative.
    public var migrations: [PostgresMigration] {
        [PostgresMigration(name: "bank.v1", sql: """
            CREATE TABLE bank_accounts (
                id TEXT PRIMARY KEY,
                balance BIGINT NOT NULL CHECK (balance >= 0)
            );
            """)]
    }

    /// Debits, credits or moves the money at once, in the transaction the library prepares. The
    /// UPDATEs are queued, not waited for, and PostgreSQL itself checks that each found its
    /// account: they reach it in one write with the library's own statements, so a prepare is one
    /// round trip.
    public func stage(_ payload: BankOperation, in context: PostgresStageContext) throws -> Vote {
        switch payload.op {
        case .debit:
            change(payload.account, by: -payload.amount, in: context)
        case .credit:
            change(payload.account, by: payload.amount, in: context)
        case .transfer:
            guard let to = payload.to else { return .no(reason: "a transfer needs `to`") }
            change(payload.account, by: -payload.amount, in: context)
            change(to, by: payload.amount, in: context)
        }
        return .yes
    }

    /// Adds `delta` to the balance of `account`; the vote is no when there is no such account or
    /// the balance would go below zero (the table's CHECK) or overflow. A row another transaction
    /// holds makes the UPDATE fail after the lock timeout, and the library votes no saying so.
    private func change(_ account: String, by delta: Int, in context: PostgresStageContext) {
        context.enqueue("UPDATE bank_accounts SET balance = balance + \(delta) WHERE id = \(account)", changing: 1) { error in
            if error.isUnexpectedRowCount { return "no account \(account)" }
            if error.isCheckViolation { return "insufficient funds in \(account) for \(-delta)" }
            if error.sqlState == "22003" { return "crediting \(delta) would overflow the balance of \(account)" }
            return nil
        }
    }
}
