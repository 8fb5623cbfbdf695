import ArbiterCore
import Testing

@Suite("Identifiers and backoff")
struct IdentifierTests {
    @Test(arguments: ["a", "order-42", "A.b_c:d-e", String(repeating: "x", count: 128)])
    func validIDs(_ text: String) throws {
        #expect(try TxID(text).rawValue == text)
    }

    @Test func invalidIDs() {
        #expect(TxID.problem(with: "") == .empty)
        #expect(TxID.problem(with: String(repeating: "x", count: 129)) == .tooLong(length: 129))
        #expect(TxID.problem(with: "a b") == .forbiddenCharacter(" "))
        #expect(TxID.problem(with: "a/b") == .forbiddenCharacter("/"))
        #expect(TxID.problem(with: "é") != nil)
        #expect(TxID.problem(with: "..") == .onlyDots)
        #expect(TxID.problem(with: "a..") == nil)
        #expect(throws: InvalidTxID.self) { try TxID("no spaces") }
        #expect(InvalidTxID.forbiddenCharacter("/").description.contains("[A-Za-z0-9._:-]"))
    }

    /// Ids are equal exactly when their texts are, whichever way each was made, and they work as
    /// dictionary keys (they hash a cached value, not the text).
    @Test func idsCompareAndHashByText() throws {
        let texts = (0..<2_000).map { "order-\($0 % 1_000)-\($0 / 1_000)" } + ["a", "b", "ab", "ba", String(repeating: "x", count: 128)]
        let first = try texts.map { try TxID($0) }
        let second = try texts.map { try TxID(String($0)) }
        for (left, right) in zip(first, second) {
            #expect(left == right && left.hashValue == right.hashValue)
        }
        #expect(try TxID("ab") != TxID("ba"))
        #expect(try TxID("order-1") != TxID("order-10"))
        var byID: [TxID: Int] = [:]
        for (index, id) in first.enumerated() { byID[id] = index }
        #expect(byID.count == texts.count)
        for (index, id) in second.enumerated() { #expect(byID[id] == index) }
        #expect(Set(first + second).count == texts.count)
        #expect(try byID[TxID("order-1000-0")] == nil)
    }

    @Test func backoffGrowsAndIsCapped() {
        let backoff = Backoff(initial: .milliseconds(100), multiplier: 2, max: .seconds(1), jitter: 0.2)
        var random = SplitMix64(seed: 7)
        for attempt in 0..<40 {
            let delay = backoff.delay(attempt: attempt, random: &random)
            let ceiling = min(Duration.milliseconds(100) * (1 << min(attempt, 20)), .seconds(1))
            #expect(delay <= ceiling)
            #expect(delay >= ceiling * 0.8)
        }
    }

    @Test func backoffWithoutJitterIsExact() {
        let backoff = Backoff(initial: .milliseconds(10), multiplier: 3, max: .milliseconds(500), jitter: 0)
        var random = SplitMix64(seed: 1)
        #expect(backoff.delay(attempt: 0, random: &random) == .milliseconds(10))
        #expect(backoff.delay(attempt: 2, random: &random) == .milliseconds(90))
        #expect(backoff.delay(attempt: 9, random: &random) == .milliseconds(500))
    }

    @Test func splitMixIsDeterministic() {
        var a = SplitMix64(seed: 42)
        var b = SplitMix64(seed: 42)
        #expect((0..<10).map { _ in a.next() } == (0..<10).map { _ in b.next() })
    }
}
