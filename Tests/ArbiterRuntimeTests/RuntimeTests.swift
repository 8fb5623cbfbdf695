@testable import ArbiterRuntime
import Testing

@Suite("Runtime")
struct RuntimeTests {
    @Test func timersFireOnceInDeadlineOrderAndCancelledOnesNever() async throws {
        let timers = TimerService<String>(resolution: .milliseconds(1))
        timers.set("late", after: .milliseconds(40))
        timers.set("early", after: .milliseconds(10))
        timers.set("cancelled", after: .milliseconds(5))
        timers.set("replaced", after: .milliseconds(5))
        timers.set("replaced", after: .milliseconds(20))
        timers.cancel("cancelled")
        var fired: [String] = []
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            try await Task.sleep(for: .milliseconds(1))
            fired += timers.takeDue()
        } while fired.count < 3 && ContinuousClock.now < deadline
        #expect(fired == ["early", "replaced", "late"])
        #expect(timers.count == 0)
        #expect(timers.takeDue().isEmpty)
    }

    @Test("the loop sleeps until the earliest timer, between the resolution and the idle poll")
    func pollIntervalFollowsTheEarliestTimer() {
        let timers = TimerService<String>(resolution: .milliseconds(2), idlePollMax: .milliseconds(40))
        #expect(timers.pollInterval == .milliseconds(40))
        timers.set("far", after: .seconds(5))
        #expect(timers.pollInterval == .milliseconds(40))
        timers.set("near", after: .milliseconds(20))
        let near = timers.pollInterval
        #expect(near > .milliseconds(2) && near <= .milliseconds(20))
        timers.set("due", after: .zero)
        #expect(timers.pollInterval == .milliseconds(2))
    }

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
