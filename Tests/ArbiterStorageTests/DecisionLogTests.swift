import ArbiterCore
@testable import ArbiterStorage
import Foundation
import GRDB
import Testing

private let bankA = ParticipantID("http://bank-a:8081")
private let bankB = ParticipantID("http://bank-b:8082")

private let jsonBranch = Branch(participant: bankA, payload: Payload(#"{"op": "debit", "account": "alice", "amount": 100}"#))
/// Not UTF-8: stored as base64, and must come back byte for byte.
private let binaryBranch = Branch(participant: bankB, payload: Payload([0xFF, 0x00, 0xFE, 0x7B]))

private func openLog(_ directory: String, clock: TestClock = TestClock()) throws -> DecisionLog {
    try DecisionLog(path: "\(directory)/coordinator.sqlite", options: testOptions(), now: clock.now)
}

@Suite("DecisionLog")
struct DecisionLogTests {
    @Test("every record kind survives close and reopen; recover returns open transactions in log order")
    func roundTrip() async throws {
        try await withTemporaryDirectory { directory in
            let (t1, t2, t3, t4, t5) = (tx("t1"), tx("t2"), tx("t3"), tx("t4"), tx("coordinator-a:t5"))
            let log = try openLog(directory)
            try await log.append([.begun(t1, branches: [jsonBranch, binaryBranch])], durability: .lazy)
            try await log.append([.begun(t3, branches: [jsonBranch])], durability: .lazy)
            try await log.append([.decided(t1, .committed, notify: [bankA, bankB], reason: nil)], durability: .forced)
            // t2's `begun` was never written (lazy, lost in a crash): the decision applies alone.
            try await log.append([.decided(t2, .aborted, notify: [bankA], reason: "bank-b voted no: insufficient funds")], durability: .lazy)
            try await log.append([.acknowledged(t1, bankB)], durability: .lazy)
            // t4 runs to its end; t5 ends without a decision (nothing to log, all read-only).
            try await log.append([
                .begun(t4, branches: [jsonBranch]),
                .decided(t4, .committed, notify: [bankA], reason: nil),
                .acknowledged(t4, bankA),
                .ended(t4),
                .ended(t5),
            ], durability: .forced)
            try await log.close()

            let reopened = try openLog(directory)
            let recovered = try await reopened.recover()
            #expect(recovered == [
                .begun(t1, branches: [jsonBranch, binaryBranch]),
                .decided(t1, .committed, notify: [bankA, bankB], reason: nil),
                .acknowledged(t1, bankB),
                .begun(t3, branches: [jsonBranch]),
                .decided(t2, .aborted, notify: [bankA], reason: "bank-b voted no: insufficient funds"),
            ])
            try await reopened.close()
        }
    }

    @Test("ids, payloads and reasons with quotes, backslashes, control characters and non-ASCII text round-trip")
    func awkwardText() async throws {
        try await withTemporaryDirectory { directory in
            let awkward = "q\"uote \\ back\nnew\tline \u{01}\u{1F}\u{7F} é 漢字 🏦 \u{2028}"
            let participant = ParticipantID("http://bank/\(awkward)")
            let branch = Branch(participant: participant, payload: Payload(#"{"note": "\#(awkward)"}"#))
            let t = tx("t-awkward")
            let log = try openLog(directory)
            try await log.append([
                .begun(t, branches: [branch, binaryBranch]),
                .decided(t, .aborted, notify: [participant, bankB], reason: awkward),
                .acknowledged(t, participant),
            ], durability: .forced)
            try await log.close()
            let reopened = try openLog(directory)
            #expect(try await reopened.recover() == [
                .begun(t, branches: [branch, binaryBranch]),
                .decided(t, .aborted, notify: [participant, bankB], reason: awkward),
                .acknowledged(t, participant),
            ])
            // The idempotency lookup reads the same text through its own connection.
            #expect(try reopened.recordedDecision(of: t) == RecordedDecision(
                state: .aborting, branches: [branch, binaryBranch], outcome: .aborted, reason: awkward))
            // The JSON columns stay valid JSON for operators' tools.
            let valid = try await reopened.writer.read { db in
                try Bool.fetchOne(db, sql: "SELECT json_valid(branches) AND json_valid(notify) FROM coordinator_transaction")
            }
            #expect(valid == true)
            try await reopened.close()
        }
    }

    @Test("stored JSON strings escape exactly the quote, the backslash and the control characters")
    func storedJSONStrings() throws {
        func literal(_ text: String) -> String {
            var json = ""
            Stored.appendJSONString(text, to: &json)
            return json
        }
        #expect(literal("plain ✓") == #""plain ✓""#)
        #expect(literal(#"{"op": "debit", "note": "a\b"}"#) == #""{\"op\": \"debit\", \"note\": \"a\\b\"}""#)
        #expect(literal("tab\tline\ncr\r\u{00}\u{1F}") == #""tab\tline\ncr\r\u0000\u001f""#)
        // Every control character, and text around it, reads back as the same string.
        let every = (0..<0x20).map { String(UnicodeScalar(UInt8($0))) }.joined() + #" "\ é 😀 \u{7F}"#
        let decoded = try JSONSerialization.jsonObject(with: Data(literal(every).utf8), options: .fragmentsAllowed) as? String
        #expect(decoded == every)
    }

    @Test("an ended transaction is not recovered, and its summary shows the whole story")
    func endedTransactions() async throws {
        try await withTemporaryDirectory { directory in
            let clock = TestClock()
            let log = try openLog(directory, clock: clock)
            let t = tx("t-ended")
            try await log.append([.begun(t, branches: [jsonBranch, binaryBranch])], durability: .lazy)
            clock.advance(by: 0.25)
            try await log.append([.decided(t, .committed, notify: [bankA, bankB], reason: "all voted yes")], durability: .forced)
            clock.advance(by: 0.5)
            try await log.append([.acknowledged(t, bankB)], durability: .lazy)
            try await log.append([.acknowledged(t, bankA), .ended(t)], durability: .lazy)
            #expect(try await log.recover().isEmpty)

            let summary = try #require(try await log.transaction(t))
            let start = Date(timeIntervalSince1970: 1_700_000_000)
            #expect(summary.state == .committed)
            #expect(summary.outcome == .committed)
            #expect(summary.reason == "all voted yes")
            #expect(summary.branches == [jsonBranch, binaryBranch])
            #expect(summary.notify == [bankA, bankB])
            #expect(summary.acknowledgements.map(\.participant) == [bankB, bankA])
            #expect(summary.acknowledgements.last?.acknowledgedAt == start.addingTimeInterval(0.75))
            // bankA's acknowledgement came in the write that ended the transaction: no row of its own.
            let rows = try await log.writer.read { db in
                try String.fetchAll(db, sql: "SELECT participant FROM coordinator_acknowledgement WHERE txid = ?", arguments: [t.rawValue])
            }
            #expect(rows == [bankB.rawValue])
            #expect(summary.createdAt == start)
            #expect(summary.decidedAt == start.addingTimeInterval(0.25))
            #expect(summary.endedAt == start.addingTimeInterval(0.75))
            #expect(try await log.transaction(tx("never-seen")) == nil)
            #expect(try log.recordedDecision(of: t) == RecordedDecision(
                state: .committed, branches: [jsonBranch, binaryBranch], outcome: .committed, reason: "all voted yes"))
            #expect(try log.recordedDecision(of: tx("never-seen")) == nil)

            // The lookup's own connection sees each write as soon as it commits, lazy ones too.
            let next = tx("t-next")
            try await log.append([.begun(next, branches: [jsonBranch])], durability: .lazy)
            #expect(try log.recordedDecision(of: next) == RecordedDecision(state: .active, branches: [jsonBranch], outcome: nil, reason: nil))
            try await log.append([.decided(next, .aborted, notify: [bankA], reason: "no")], durability: .lazy)
            #expect(try log.recordedDecision(of: next) == RecordedDecision(state: .aborting, branches: [jsonBranch], outcome: .aborted, reason: "no"))

            let presumed = tx("t-ended-undecided")
            try await log.append([.begun(presumed, branches: [jsonBranch]), .ended(presumed)], durability: .lazy)
            let presumedSummary = try #require(try await log.transaction(presumed))
            #expect(presumedSummary.state == .aborted)
            #expect(presumedSummary.outcome == nil)
            try await log.close()
            let closed = #expect(throws: StorageError.self) { try log.recordedDecision(of: t) }
            #expect(closed?.code == .closed)
        }
    }

    @Test("records apply idempotently, and a decision never changes")
    func decisionsAreFinal() async throws {
        try await withTemporaryDirectory { directory in
            let log = try openLog(directory)
            let t = tx("t-final")
            let decided = CoordinatorRecord.decided(t, .committed, notify: [bankA], reason: nil)
            try await log.append([.begun(t, branches: [jsonBranch]), decided], durability: .forced)
            try await log.append([decided, .acknowledged(t, bankA), .acknowledged(t, bankA)], durability: .forced)
            #expect(try await log.recover() == [.begun(t, branches: [jsonBranch]), decided, .acknowledged(t, bankA)])

            let error = await #expect(throws: StorageError.self) {
                try await log.append([.acknowledged(t, bankB), .decided(t, .aborted, notify: [bankA], reason: "late")], durability: .forced)
            }
            #expect(error?.code == .conflict)
            // The refused append applied nothing, not even its first record.
            #expect(try await log.recover() == [.begun(t, branches: [jsonBranch]), decided, .acknowledged(t, bankA)])
            try await log.close()
        }
    }

    @Test("operators list transactions by state, a page at a time")
    func listing() async throws {
        try await withTemporaryDirectory { directory in
            let log = try openLog(directory)
            // t-0 … t-11 cycle through the five states, one index apart.
            for index in 0..<12 {
                let t = tx("t-\(index)")
                try await log.append([.begun(t, branches: [jsonBranch])], durability: .lazy)
                switch index % 5 {
                case 0: break  // active
                case 1: try await log.append([.decided(t, .committed, notify: [bankA], reason: nil)], durability: .forced)
                case 2: try await log.append([.decided(t, .aborted, notify: [bankA], reason: "no")], durability: .lazy)
                case 3:
                    try await log.append([.decided(t, .committed, notify: [bankA], reason: nil)], durability: .forced)
                    try await log.append([.acknowledged(t, bankA), .ended(t)], durability: .lazy)
                default: try await log.append([.ended(t)], durability: .lazy)  // aborted undecided
                }
            }
            let all = try await log.list()
            #expect(all.map(\.txid.rawValue) == (0..<12).map { "t-\($0)" })
            let expected: [TransactionState: [String]] = [
                .active: ["t-0", "t-5", "t-10"], .committing: ["t-1", "t-6", "t-11"], .aborting: ["t-2", "t-7"],
                .committed: ["t-3", "t-8"], .aborted: ["t-4", "t-9"],
            ]
            for state in TransactionState.allCases {
                let listed = try await log.list(state: state)
                #expect(listed.map(\.txid.rawValue) == expected[state], "\(state)")
                #expect(listed.allSatisfy { $0.state == state }, "\(state)")

                var paged: [String] = []
                var cursor: TransactionCursor?
                while true {
                    let page = try await log.list(state: state, limit: 1, after: cursor)
                    if page.isEmpty { break }
                    paged += page.map(\.txid.rawValue)
                    cursor = TransactionCursor(page.last!.cursor.description)  // through its text form
                }
                #expect(paged == expected[state], "\(state)")
            }

            let error = await #expect(throws: StorageError.self) { try await log.list(limit: 0) }
            #expect(error?.code == .invalidArgument)
            try await log.close()
        }
    }

    @Test("each listing reads in log order without sorting: open and aborted ones through their partial indexes, the rest along the log")
    func listingPlans() async throws {
        try await withTemporaryDirectory { directory in
            let log = try openLog(directory)
            try await log.writer.write(.lazy) { db in
                for index in 0..<500 {
                    let t = tx("t-\(index)")
                    try DecisionLog.apply(.decided(t, index % 10 == 0 ? .aborted : .committed, notify: [bankA], reason: nil), atMilliseconds: 0, in: db)
                    if index % 3 != 0 { try DecisionLog.apply(.ended(t), atMilliseconds: 0, in: db) }
                }
            }
            let expectedIndex: [TransactionState?: String] = [
                .active: "USING INDEX coordinator_transaction_open", .committing: "USING INDEX coordinator_transaction_open",
                .aborting: "USING INDEX coordinator_transaction_open", .aborted: "USING INDEX coordinator_transaction_aborted",
                .committed: "USING INTEGER PRIMARY KEY", nil: "USING INTEGER PRIMARY KEY",
            ]
            // With and without the statistics of ANALYZE, which change SQLite's plans.
            for analyzed in [false, true] {
                if analyzed { try await log.writer.write(.lazy) { db in try db.execute(sql: "ANALYZE") } }
                for (state, index) in expectedIndex {
                    let plan = try await log.writer.read { db in
                        try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN SELECT seq \(DecisionLog.listFilter(state)) ORDER BY seq LIMIT 10",
                                         arguments: [0]).map { row -> String in row["detail"] }
                    }
                    // One search of one index from the cursor on: no scan of the whole table.
                    #expect(plan.count == 1, "\(String(describing: state)), analyzed: \(analyzed): \(plan)")
                    #expect(plan.first?.hasPrefix("SEARCH") == true, "\(String(describing: state)), analyzed: \(analyzed): \(plan)")
                    #expect(plan.first?.contains(index) == true, "\(String(describing: state)), analyzed: \(analyzed): \(plan)")
                    #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "\(String(describing: state)) sorts: \(plan)")
                }
            }
            try await log.close()
        }
    }

    @Test("recovery reads only open transactions, through the partial index of open ones")
    func recoveryUsesTheIndex() async throws {
        try await withTemporaryDirectory { directory in
            let log = try openLog(directory)
            // A log with many ended transactions and a few open ones.
            try await log.writer.write(.lazy) { db in
                for index in 0..<2000 {
                    let t = tx("ended-\(index)")
                    try DecisionLog.apply(.decided(t, .committed, notify: [bankA], reason: nil), atMilliseconds: 0, in: db)
                    try DecisionLog.apply(.acknowledged(t, bankA), atMilliseconds: 0, in: db)
                    try DecisionLog.apply(.ended(t), atMilliseconds: 0, in: db)
                }
            }
            try await log.append([
                .decided(tx("open"), .committed, notify: [bankA, bankB], reason: nil), .acknowledged(tx("open"), bankB),
            ], durability: .forced)
            #expect(try await log.recover().count == 2)

            // With and without the statistics of ANALYZE, which change SQLite's plans.
            for analyzed in [false, true] {
                if analyzed { try await log.writer.write(.lazy) { db in try db.execute(sql: "ANALYZE") } }
                for sql in [DecisionLog.openTransactionsSQL, DecisionLog.openAcknowledgementsSQL] {
                    let plan = try await log.writer.read { db in
                        try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN \(sql)").map { row -> String in row["detail"] }
                    }
                    // The only scan is of the partial index, which holds open transactions only.
                    let scans = plan.filter { $0.hasPrefix("SCAN") }
                    #expect(scans.count == 1, "analyzed: \(analyzed), plan: \(plan)")
                    #expect(scans.allSatisfy { $0.hasSuffix("USING INDEX coordinator_transaction_open") }, "analyzed: \(analyzed), plan: \(plan)")
                }
            }
            try await log.close()
        }
    }
}

@Suite("DecisionLog: the operator's reads and audit trail")
struct DecisionLogOperatorTests {
    @Test("open(createdBefore:) lists undecided and unacknowledged transactions oldest first; ages and counts by state")
    func openTransactions() async throws {
        try await withTemporaryDirectory { directory in
            let clock = TestClock()
            let log = try openLog(directory, clock: clock)
            #expect(try await log.oldestOpen().undecidedSince == nil)
            #expect(try await log.oldestOpen().unacknowledgedSince == nil)
            try await log.append([.begun(tx("old"), branches: [jsonBranch])], durability: .lazy)
            clock.advance(by: 10)
            try await log.append([
                .begun(tx("decided"), branches: [jsonBranch, binaryBranch]),
                .decided(tx("decided"), .committed, notify: [bankA, bankB], reason: nil),
                .acknowledged(tx("decided"), bankA),
                .begun(tx("done"), branches: [jsonBranch]),
                .decided(tx("done"), .committed, notify: [bankA], reason: nil),
                .acknowledged(tx("done"), bankA),
                .ended(tx("done")),
            ], durability: .forced)
            clock.advance(by: 10)
            try await log.append([.begun(tx("young"), branches: [jsonBranch])], durability: .lazy)

            let all = try await log.open(createdBefore: clock.now())
            #expect(all.map(\.txid.rawValue) == ["old", "decided", "young"])
            #expect(all[1].acknowledgements.map(\.participant) == [bankA] && all[1].notify == [bankA, bankB])
            #expect(try await log.open(createdBefore: clock.now().addingTimeInterval(-5)).map(\.txid.rawValue) == ["old", "decided"])
            #expect(try await log.open(createdBefore: clock.now(), limit: 1).map(\.txid.rawValue) == ["old"])
            await #expect(throws: StorageError.self) { try await log.open(createdBefore: clock.now(), limit: 0) }

            let ages = try await log.oldestOpen()
            #expect(ages.undecidedSince == Date(timeIntervalSince1970: 1_700_000_000))
            #expect(ages.unacknowledgedSince == Date(timeIntervalSince1970: 1_700_000_010))
            #expect(try await log.openCounts() == ["active": 2, "committing": 1])
            try await log.close()
        }
    }

    @Test("the audit trail keeps who, when, what, why and the result, newest first, across reopening")
    func auditTrail() async throws {
        try await withTemporaryDirectory { directory in
            let log = try openLog(directory)
            let first = try await log.beginOperatorAction(actor: "alice", action: "retry", txid: tx("t1"), reason: "bank-b is back")
            try await log.finishOperatorAction(first, result: "done: resent to http://bank-b:8082")
            let second = try await log.beginOperatorAction(actor: "bob", action: "retry", txid: tx("t2"), reason: "try again")
            try await log.close()

            // The second never got its result (as after a crash while it ran): kept without one.
            let reopened = try openLog(directory)
            let trail = try await reopened.operatorActions()
            #expect(trail.map(\.id) == [second, first])
            #expect(trail.map(\.actor) == ["bob", "alice"] && trail.map(\.reason) == ["try again", "bank-b is back"])
            #expect(trail[0].result == nil && trail[1].result == "done: resent to http://bank-b:8082")
            #expect(try await reopened.operatorActions(limit: 1).map(\.id) == [second])
            #expect(try await reopened.operatorActions(before: second).map(\.id) == [first])
            // An audit row without an actor or reason is refused by the table itself.
            await #expect(throws: (any Error).self) {
                try await reopened.writer.write(.forced) { db in
                    try db.execute(sql: "INSERT INTO coordinator_operator_audit (at_ms, actor, action, txid, reason) VALUES (1, '', 'retry', 't', 'r')")
                }
            }
            try await reopened.close()
        }
    }
}
