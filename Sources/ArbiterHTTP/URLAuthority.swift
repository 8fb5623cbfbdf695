/// The authority of an `http://` or `https://` URL — `host`, `host:port`, `[v6]` or `[v6]:port` —
/// read one way for both readers of service URLs: their validation
/// (``WireValidation/serviceURL(_:field:limits:)``) and the hot path's connections
/// (``HTTP1Connections``). No credentials; a port is 1–5 plain digits in 1...65535.
enum URLAuthority {
    typealias Bytes = Slice<UnsafeBufferPointer<UInt8>>

    /// The first rule an authority breaks, in the order they are checked.
    enum Problem: Error {
        case credentials, unterminatedIPv6, badPort, noHost
    }

    /// Reads `authority` (the bytes between `scheme://` and the path): the host, an IPv6 literal
    /// without its brackets, and the port when one is given.
    static func read(_ authority: Bytes) -> Result<(host: Bytes, port: Int?), Problem> {
        if authority.contains(UInt8(ascii: "@")) { return .failure(.credentials) }
        let host: Bytes
        let portText: Bytes
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return .failure(.unterminatedIPv6) }
            host = authority[(authority.startIndex + 1)..<close]
            portText = authority[(close + 1)...]
        } else if let colon = authority.firstIndex(of: UInt8(ascii: ":")) {
            host = authority[..<colon]
            portText = authority[colon...]
        } else {
            host = authority
            portText = authority[authority.endIndex...]
        }
        var port: Int?
        if !portText.isEmpty {
            let digits = portText.dropFirst()
            guard portText.first == UInt8(ascii: ":"), (1...5).contains(digits.count),
                  digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
            else { return .failure(.badPort) }
            let number = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            guard (1...65535).contains(number) else { return .failure(.badPort) }
            port = number
        }
        if host.isEmpty { return .failure(.noHost) }
        return .success((host, port))
    }
}
