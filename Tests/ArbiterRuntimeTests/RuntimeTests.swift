import ArbiterCore
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

    /// The lanes and the heap behind ``TimerService`` against a plain model: streams of constant
    /// delays, random delays, more distinct patterns than there are lanes (so the heap is used),
    /// replacements, cancellations, and equal due times.
    @Test(arguments: [1, 2, 3])
    func timerQueueFiresWhatAPlainModelFires(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var queue = TimerQueue<Int>()
        var model: [Int: (due: Int64, order: Int)] = [:]
        var order = 0
        var now: Int64 = 0
        var heapUsed = false
        let streams: [Int64] = [5_000, 30_000, 200, 1_000]

        func takeDueFromModel(_ now: Int64) -> [Int] {
            let due = model.filter { $0.value.due <= now }.sorted { ($0.value.due, $0.value.order) < ($1.value.due, $1.value.order) }
            for (id, _) in due { model[id] = nil }
            return due.map(\.key)
        }

        for step in 0..<20_000 {
            now += Int64(random.next() % 4)
            let id = Int(random.next() % 600)
            let delay: Int64
            switch random.next() % 10 {
            case 0..<5: delay = streams[Int(random.next() % UInt64(streams.count))]
            case 5: delay = Int64(random.next() % 10_000)
            case 6: delay = 50 * Int64(1 + random.next() % 40)  // Many distinct delays: more than the lanes.
            case 7:
                queue.cancel(id)
                model[id] = nil
                continue
            default:
                #expect(queue.takeDue(now: now) == takeDueFromModel(now), "step \(step)")
                continue
            }
            queue.set(id, due: now + delay)
            order += 1
            model[id] = (now + delay, order)
            heapUsed = heapUsed || !queue.heap.isEmpty
            #expect(queue.count == model.count)
            if let earliest = model.values.map(\.due).min() {
                #expect(queue.nextDue.map { $0 <= earliest } == true)
            }
        }
        #expect(heapUsed && queue.lanes.count == TimerQueue<Int>.laneCountMax)
        #expect(queue.takeDue(now: now + 100_000) == takeDueFromModel(now + 100_000))
        #expect(queue.count == 0 && queue.queuedCount == 0 && queue.nextDue == nil)
    }

    @Test("a stream of timers with one delay stays in one lane, in order")
    func oneDelayKeepsOneLane() {
        var queue = TimerQueue<Int>()
        for id in 0..<100_000 { queue.set(id, due: Int64(id / 3) + 30_000) }
        for id in stride(from: 0, to: 100_000, by: 2) { queue.cancel(id) }
        #expect(queue.lanes.count == 1 && queue.heap.isEmpty && queue.count == 50_000)
        #expect(queue.takeDue(now: 30_000 + 20_000) == Array(stride(from: 1, through: 60_002, by: 2)))
        #expect(queue.takeDue(now: .max) == Array(stride(from: 60_003, to: 100_000, by: 2)))
        #expect(queue.queuedCount == 0)
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
