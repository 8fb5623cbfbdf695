import ArbiterRuntime
import Foundation
import Synchronization
import Testing

/// The thread that runs a service's loop: rounds get what was posted, in order, on a thread of
/// their own; a round's deadline wakes it without a post; stop runs `finish` with what is left,
/// and whatever is posted afterwards goes to `late`. Waits are on conditions with bounded
/// deadlines, never on timing.
@Suite("Loop thread")
struct LoopThreadTests {
    final class Seen: Sendable {
        private let state = Mutex<(rounds: [[Int]], finished: [Int]?, late: [Int], threads: Set<String>)>(([], nil, [], []))
        func round(_ inputs: [Int]) {
            // The kernel's name of the calling thread, as `top -H` shows it.
            let name = ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .newlines)
            state.withLock { $0.rounds.append(inputs); $0.threads.insert(name) }
        }
        func finish(_ inputs: [Int]) { state.withLock { $0.finished = inputs } }
        func late(_ input: Int) { state.withLock { $0.late.append(input) } }
        var rounds: [[Int]] { state.withLock { $0.rounds } }
        var finished: [Int]? { state.withLock { $0.finished } }
        var lateInputs: [Int] { state.withLock { $0.late } }
        var threads: Set<String> { state.withLock { $0.threads } }
    }

    func eventually(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { Issue.record("condition not met within 10 s"); return }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    @Test("rounds get every posted input in order, on the loop's own thread; stop finishes with the rest; later posts go to late")
    func postsRoundsStopAndLate() async throws {
        let seen = Seen()
        let thread = LoopThread<Int>(name: "test-loop")
        thread.start(round: { round in
            seen.round(round.inputs)
            return .sleep(until: nil)
        }, finish: { seen.finish($0) }, late: { seen.late($0) })
        for value in 1...100 { thread.post(value) }
        try await eventually { seen.rounds.flatMap { $0 }.count == 100 }
        #expect(seen.rounds.flatMap { $0 } == Array(1...100), "every input once, in order")
        #expect(seen.threads == ["test-loop"])
        await thread.stop()
        #expect(seen.finished == [])
        thread.post(101)
        #expect(seen.lateInputs == [101])
        await thread.stop()  // Harmless again.
    }

    @Test("a round's deadline wakes the thread without a post")
    func deadlinesWake() async throws {
        let seen = Seen()
        let thread = LoopThread<Int>(name: "test-loop")
        thread.post(0)  // Before the start, so that the first round has it.
        thread.start(round: { round in
            seen.round(round.inputs)
            // Ask to be woken shortly after now, three times.
            return seen.rounds.count < 4 ? .sleep(until: round.now + .milliseconds(1)) : .sleep(until: nil)
        }, finish: { _ in }, late: { _ in })
        try await eventually { seen.rounds.count >= 4 }
        #expect(seen.rounds.first == [0])
        let wokenEmpty = seen.rounds.dropFirst().allSatisfy { $0.isEmpty }
        #expect(wokenEmpty, "woken by the deadline, with nothing posted")
        await thread.stop()
    }

    @Test("stop before start returns at once")
    func stopBeforeStart() async {
        let thread = LoopThread<Int>(name: "never")
        await thread.stop()
    }
}
