import ArbiterCore
import Synchronization

/// Makes transaction ids unique across restarts and across coordinators:
/// `NAME-BOOT-SEQUENCE`, where BOOT is random per start of the process.
final class TransactionIDs: Sendable {
    private let prefix: String
    private let sequence = Atomic<UInt64>(0)

    init(name: String) {
        var random = SystemRandomNumberGenerator()
        let boot = String(random.next() & 0xFFFF_FFFF_FFFF, radix: 36)
        let safeName = String(name.filter { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }.prefix(40))
        prefix = "\(safeName.isEmpty ? "arbiter" : safeName)-\(boot)-"
    }

    func next() -> TxID {
        let number = sequence.add(1, ordering: .relaxed).newValue
        return try! TxID(prefix + String(number))  // Built from the id alphabet only.
    }
}
