import ArbiterHTTP
import Testing

/// An operator's reason goes into an audit row: printable text, bounded, never empty — a NUL would
/// make SQLite see an empty string and refuse the row (the bad-input campaign found that as a 503).
@Suite("Operator reasons")
struct OperatorReasonTests {
    @Test("a reason is trimmed and kept")
    func kept() throws {
        #expect(try WireValidation.operatorReason("  bank-b is back\n\tticket 4711 ", doing: "retry") == "bank-b is back\n\tticket 4711")
    }

    @Test("missing, blank, too long or with control characters: 400 naming `reason`", arguments: [
        nil, "", "   ", String(repeating: "x", count: 1001), "\u{0}", "\u{0}abc", "a\u{7}b", "a\u{1B}[31mb", "a\u{85}b",
    ] as [String?])
    func refused(_ text: String?) {
        #expect {
            _ = try WireValidation.operatorReason(text, doing: "retry")
        } throws: { error in
            (error as? APIError)?.field == "reason" && (error as? APIError)?.status == .badRequest
        }
    }
}
