import ArbiterCore
@testable import ArbiterRuntime
import Testing

@Suite("Runtime")
struct RuntimeTests {
    @Test func failpointRulesParse() {
        let rules = Failpoints.parse("a=crash, b=delay(25),c=error@3,bad,d=explode,e=delay(x)")
        #expect(rules["a"]?.action == .crash)
        #expect(rules["b"]?.action == .delay(.milliseconds(25)))
        #expect(rules["c"]?.action == .error && rules["c"]?.onHit == 3)
        #expect(rules["d"] == nil && rules["e"] == nil && rules.count == 3)
    }

    @Test func failpointsAreInertWhenUnset() async throws {
        #expect(!Failpoints.isEnabled)
        try await Failpoints.hit("coordinator.before-decision")
        try Failpoints.hitSync("participant.before-vote")
    }
}
