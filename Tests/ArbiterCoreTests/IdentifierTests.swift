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
