import ArbiterCore
@testable import ArbiterPostgres
import ArbiterRuntime
@testable import ArbiterSimulation
import ArbiterTesting
import Foundation
import Logging
import Testing

/// Where a test's coordinators keep their decisions: a real PostgreSQL (a throwaway cluster per
/// test) or the simulator's shared store on the wall clock. The rules tests run on both, so the
/// store the simulator checks the protocol against is the one the service would run on.
enum SharedStoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case postgres, simulated

    var testDescription: String { rawValue }

    /// Opens stores on one fresh database; `open(name, lease)` is a coordinator's start.
    func database() async throws -> (server: PostgresServer?, open: (String, Duration) throws -> any SharedDecisionStore) {
        switch self {
        case .postgres:
            let server = try await PostgresServer()
            return (server, { name, lease in
                try PostgresDecisionStore(location: PostgresLocation(url: server.url), name: name, lease: lease,
                                          logger: SharedDecisionStoreTests.logger)
            })
        case .simulated:
            let started = ContinuousClock.now
            let clock: () -> SimTime = { (ContinuousClock.now - started).microseconds }
            let shared = SimulatedSharedStore(leaseLength: 0, skipsFencing: false, clock: clock)
            return (nil, { name, lease in
                shared.leaseLength = lease.microseconds
                let store = SimulatedClusterStore(shared: shared, name: name)
                store.open()
                return store
            })
        }
    }
}

/// The cluster's decision store: the conditional-write rules on both stores; migrations, URLs and
/// a server restart on PostgreSQL.
@Suite("Shared decision store", .serialized, .enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (Debian: postgresql)"))
struct SharedDecisionStoreTests {
    let p0 = ParticipantID("http://127.0.0.1:1")
    let p1 = ParticipantID("http://127.0.0.1:2")

    static var logger: Logger {
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .critical
        return logger
    }

    func store(_ server: PostgresServer, _ name: String, lease: Duration = .seconds(30)) throws -> PostgresDecisionStore {
        try PostgresDecisionStore(location: PostgresLocation(url: server.url), name: name, lease: lease, logger: Self.logger)
    }

    typealias Open = (String, Duration) throws -> any SharedDecisionStore

    func branches() -> [Branch] { [Branch(participant: p0, payload: Payload("a")), Branch(participant: p1, payload: Payload(#"{"x":1}"#))] }

    @Test("a coordinator's records of a transaction another one owns are refused, the rest of its round applied; the first decision wins",
          arguments: SharedStoreKind.allCases)
    func fencing(_ kind: SharedStoreKind) async throws {
        let (server, open) = try await kind.database()
        defer { withExtendedLifetime(server) {} }
        let c1 = try open("C1", .seconds(30))
        let c2 = try open("C2", .seconds(30))
        let (t, u) = (try TxID("t"), try TxID("u"))
        #expect(try c1.commit([.begun(t, branches: branches()), .decided(t, .committed, notify: [p0, p1], reason: nil)], forced: true) == [])
        #expect(try c2.commit([.decided(t, .aborted, notify: [], reason: "late"), .begun(u, branches: branches())], forced: false) == [t])
        #expect(try c2.lookup([u])[0]?.branches == branches(), "the rest of the round was applied")
        let seenByC2 = try #require(try c2.lookup([t])[0])
        #expect(seenByC2.outcome == .committed && seenByC2.drivenElsewhere && seenByC2.branches == branches())
        #expect(try c1.lookup([t])[0]?.drivenElsewhere == false)
        // Its owner cannot change the decision either.
        #expect(try c1.commit([.decided(t, .aborted, notify: [], reason: nil)], forced: true) == [t])
        #expect(try c1.commit([.acknowledged(t, p0), .acknowledged(t, p0), .acknowledged(t, p1), .ended(t)], forced: false) == [])
        let ended = try #require(try c2.lookup([t])[0])
        #expect(ended.ended && !ended.drivenElsewhere)
        #expect(try c1.lookup([try TxID("nobody")]) == [nil])
    }

    @Test("a presumed abort is written only where no row exists: a coordinator's later `begun` for the id is refused",
          arguments: SharedStoreKind.allCases)
    func presumedAbortIsInsertIfAbsent(_ kind: SharedStoreKind) async throws {
        let (server, open) = try await kind.database()
        defer { withExtendedLifetime(server) {} }
        let (c1, c2) = (try open("C1", .seconds(30)), try open("C2", .seconds(30)))
        let x = try TxID("x")
        #expect(try c2.commit([.decided(x, .aborted, notify: [], reason: "presumed"), .ended(x)], forced: true) == [])
        #expect(try c1.commit([.begun(x, branches: branches())], forced: false) == [x])
        #expect(try c1.commit([.decided(x, .committed, notify: [p0], reason: nil)], forced: true) == [x])
        let logged = try #require(try c1.lookup([x])[0])
        #expect(logged.outcome == .aborted && logged.ended && logged.branches == nil)
    }

    @Test("a new incarnation of a name takes its lease with a new epoch, adopts its unfinished transactions and fences the old one",
          arguments: SharedStoreKind.allCases)
    func newIncarnationFencesTheOld(_ kind: SharedStoreKind) async throws {
        let (server, open) = try await kind.database()
        defer { withExtendedLifetime(server) {} }
        let old = try open("A", .seconds(30))
        let t = try TxID("t")
        #expect(try old.commit([.begun(t, branches: branches())], forced: false) == [])
        let new = try open("A", .seconds(30))
        #expect(try new.recover() == [.begun(t, branches: branches())])
        #expect(try old.renewLease() == false, "the old incarnation learns it is fenced")
        #expect(try new.renewLease())
        #expect(try old.commit([.decided(t, .committed, notify: [p0, p1], reason: nil)], forced: true) == [t])
        #expect(try new.commit([.decided(t, .aborted, notify: [p0, p1], reason: "restarted")], forced: false) == [])
    }

    @Test("once a coordinator's lease expires, another takes its unfinished transactions over in log order, with what they hold",
          arguments: SharedStoreKind.allCases)
    func takeover(_ kind: SharedStoreKind) async throws {
        let (server, open) = try await kind.database()
        defer { withExtendedLifetime(server) {} }
        // B first: the simulated store renews every lease with the length of the last one opened.
        let survivor = try open("B", .seconds(30))
        let dying = try open("A", .seconds(2))
        let (t1, t2, t3) = (try TxID("t1"), try TxID("t2"), try TxID("t3"))
        #expect(try dying.commit([
            .begun(t1, branches: branches()),
            .begun(t2, branches: branches()), .decided(t2, .committed, notify: [p0, p1], reason: nil), .acknowledged(t2, p0),
            .begun(t3, branches: branches()), .decided(t3, .aborted, notify: [], reason: "no"), .ended(t3),
        ], forced: true) == [])
        // Renewed just before B looks: held for 2 s from now, however long the writes above took.
        #expect(try dying.renewLease())
        #expect(try survivor.claimOrphans(limit: 10) == [], "the lease is still held")
        var claimed: [CoordinatorRecord] = []
        try await eventually("A's lease expired and B claimed its work", timeout: .seconds(30), poll: .milliseconds(50)) {
            claimed = try survivor.claimOrphans(limit: 10)
            return !claimed.isEmpty
        }
        #expect(claimed == [
            .begun(t1, branches: branches()),
            .begun(t2, branches: branches()), .decided(t2, .committed, notify: [p0, p1], reason: nil), .acknowledged(t2, p0),
        ])
        #expect(try survivor.claimOrphans(limit: 10) == [], "claimed once")
        // The dead coordinator, back from a pause, can no longer write them; its renewal still
        // succeeds (nobody took its name), and what it starts next is its own.
        #expect(try dying.commit([.decided(t1, .committed, notify: [p0, p1], reason: nil)], forced: true) == [t1])
        #expect(try survivor.commit([.decided(t1, .aborted, notify: [p0, p1], reason: "taken over")], forced: false) == [])
        #expect(try dying.lookup([t1])[0]?.drivenElsewhere == true)
    }

    @Test("a claim takes at most its batch, oldest first", arguments: SharedStoreKind.allCases)
    func claimBatches(_ kind: SharedStoreKind) async throws {
        let (server, open) = try await kind.database()
        defer { withExtendedLifetime(server) {} }
        let dying = try open("A", .milliseconds(100))
        let survivor = try open("B", .seconds(30))
        let ids = try (0..<5).map { try TxID("t\($0)") }
        #expect(try dying.commit(ids.map { .begun($0, branches: branches()) }, forced: false) == [])
        var first: [CoordinatorRecord] = []
        try await eventually("A's lease expired", timeout: .seconds(30), poll: .milliseconds(50)) {
            first = try survivor.claimOrphans(limit: 2)
            return !first.isEmpty
        }
        #expect(first.map(\.txid) == Array(ids.prefix(2)))
        #expect(try survivor.claimOrphans(limit: 10).map(\.txid) == Array(ids.suffix(3)))
    }

    @Test("the schema is applied once; a database written by a newer Arbiter is refused with a clear error")
    func migrations() async throws {
        let server = try await PostgresServer()
        _ = try store(server, "A")
        _ = try store(server, "B")
        #expect(try await server.psql("SELECT version FROM arbiter_schema_version WHERE component = 'coordinator-postgres'") == "1\n")
        try await server.psql("UPDATE arbiter_schema_version SET version = 99 WHERE component = 'coordinator-postgres'")
        #expect {
            _ = try store(server, "C")
        } throws: { error in
            "\(error)".contains("version 99") && "\(error)".contains("upgrade Arbiter")
        }
    }

    @Test("a bad --store URL is refused naming what is wrong, never printing the password")
    func badLocations() throws {
        #expect(throws: PostgresStoreError.self) { try PostgresLocation(url: "mysql://u@h/db") }
        #expect(throws: PostgresStoreError.self) { try PostgresLocation(url: "postgres://h:5432/db") }
        #expect(throws: PostgresStoreError.self) { try PostgresLocation(url: "postgres://u:s3cret@h:5432/") }
        do {
            _ = try PostgresLocation(url: "postgres://u:s3cret@h:5432/")
        } catch {
            #expect(!"\(error)".contains("s3cret"))
        }
        let location = try PostgresLocation(url: "postgresql://arbiter:p%40ss@db.example:6543/decisions")
        #expect(location.password == "p@ss" && location.port == 6543 && location.database == "decisions")
        #expect(location.description == "postgres://arbiter@db.example:6543/decisions")
        #expect(try PostgresLocation(url: "postgres://arbiter@db/decisions", password: "from-file").password == "from-file")
    }

    @Test("PostgreSQL restarted: the call during the outage throws `unavailable`, the next one reconnects, and nothing committed is lost")
    func serverRestart() async throws {
        let server = try await PostgresServer()
        let c = try store(server, "C")
        let t = try TxID("t")
        #expect(try c.commit([.begun(t, branches: branches()), .decided(t, .committed, notify: [p0], reason: nil)], forced: true) == [])
        try await server.stop()
        #expect {
            _ = try c.lookup([t])
        } throws: { error in
            if case .unavailable = error as? PostgresStoreError { true } else { false }
        }
        try await server.start()
        #expect(try c.lookup([t])[0]?.outcome == .committed)
        #expect(try c.renewLease())
    }

    @Test("the embedded schema is byte for byte schemas/coordinator-postgres.sql")
    func schemaFile() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("schemas/coordinator-postgres.sql")
        let onDisk = try String(contentsOf: file, encoding: .utf8)
        #expect(onDisk == PostgresSchemas.coordinatorPostgres + "\n" || onDisk == PostgresSchemas.coordinatorPostgres,
                "schemas/coordinator-postgres.sql changed: run schemas/embed-in-swift.sh")
    }
}
