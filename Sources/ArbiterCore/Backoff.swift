/// Capped exponential backoff with jitter.
///
/// The delay before attempt `n` (from 0) is `min(initial × multiplier^n, max)`, reduced by a random
/// fraction of at most `jitter`, so that many retries scheduled together spread out instead of
/// arriving at a recovering peer at once.
public struct Backoff: Hashable, Sendable {
    public var initial: Duration
    public var multiplier: Double
    public var max: Duration
    /// The largest fraction of a delay that jitter removes, in 0...1.
    public var jitter: Double

    public init(initial: Duration, multiplier: Double = 2, max: Duration, jitter: Double = 0.2) {
        precondition(initial > .zero && max >= initial, "backoff needs 0 < initial <= max")
        precondition(multiplier >= 1, "backoff multiplier must be at least 1")
        precondition((0...1).contains(jitter), "backoff jitter must be in 0...1")
        self.initial = initial
        self.multiplier = multiplier
        self.max = max
        self.jitter = jitter
    }

    /// The delay before retry number `attempt`, drawing jitter from `random`.
    public func delay(attempt: Int, random: inout some RandomNumberGenerator) -> Duration {
        precondition(attempt >= 0)
        var delay = initial
        // Bounded: the loop stops as soon as the cap is reached, at most a few dozen steps.
        var step = 0
        while step < attempt && delay < max {
            delay = delay * multiplier
            step += 1
        }
        if delay > max { delay = max }
        guard jitter > 0 else { return delay }
        let cut = Double.random(in: 0..<1, using: &random) * jitter
        return delay * (1 - cut)
    }
}

/// A small, fast, seedable pseudo-random generator (SplitMix64).
///
/// The state machines draw their jitter from one of these, seeded by their driver: the simulator
/// seeds it from the run's seed so that a run replays exactly; the services seed it from the
/// system's generator.
public struct SplitMix64: RandomNumberGenerator, Hashable, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
