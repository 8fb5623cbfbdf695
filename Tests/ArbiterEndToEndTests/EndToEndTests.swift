import Testing

/// The crash-recovery suite: a real `arbiter coordinator` and real `bank-node` processes on
/// loopback, crashed at every protocol step (failpoints), cut off mid-protocol (timeouts), and
/// killed at random under load (chaos). Each scenario ends by letting the cluster settle and
/// checking the bank's invariants over every transaction its clients issued; the suite prints a
/// table of scenarios, transactions, crashes and violations (docs/testing.md).
///
/// Serialized: each scenario runs several processes, and the machine has few cores.
@Suite("End to end: real processes crashed at every step", .serialized, .resultsTable)
struct EndToEnd {}
