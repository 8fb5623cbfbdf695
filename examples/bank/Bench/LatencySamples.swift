/// Latencies in nanoseconds, every sample kept: percentiles are exact.
///
/// A run of the benchmark records at most a few million transfers (8 bytes each), so keeping them
/// all costs less memory than the servers it measures, and it keeps the benchmark free of a
/// histogram package that a library user of Arbiter would otherwise resolve.
struct LatencySamples: Sendable {
    private(set) var nanoseconds: [UInt64] = []

    /// Records `duration`, at least 1 µs (the resolution the reports use).
    mutating func record(_ duration: Duration) {
        nanoseconds.append(UInt64(clamping: Swift.max(duration.nanosecondsCount, 1_000)))
    }

    /// Adds every sample of `other`.
    mutating func add(_ other: LatencySamples) {
        nanoseconds += other.nanoseconds
    }
}

extension LatencySummary {
    init(_ samples: LatencySamples) {
        let sorted = samples.nanoseconds.sorted()
        /// The smallest sample that at least `percentile` % of the samples do not exceed.
        func value(atPercentile percentile: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let rank = Int((percentile / 100 * Double(sorted.count)).rounded(.up))
            return Double(sorted[Swift.min(Swift.max(rank, 1), sorted.count) - 1])
        }
        count = UInt64(sorted.count)
        p50Nanoseconds = value(atPercentile: 50)
        p99Nanoseconds = value(atPercentile: 99)
        p999Nanoseconds = value(atPercentile: 99.9)
        maxNanoseconds = Double(sorted.last ?? 0)
        meanNanoseconds = sorted.isEmpty ? 0 : sorted.reduce(0.0) { $0 + Double($1) } / Double(sorted.count)
    }
}
