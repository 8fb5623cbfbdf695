#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A shared secret that authenticates HTTP requests as `Authorization: Bearer <secret>`.
///
/// The type never shows the secret: `description` and string interpolation print `<redacted>`, so
/// a secret that ends up in a log line by accident stays secret. Comparison runs in time that does
/// not depend on where the first differing byte is.
public struct BearerSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    let bytes: [UInt8]

    /// Wraps `text`, trimmed of surrounding whitespace.
    ///
    /// - Throws: ``SecretError`` when nothing remains after trimming, or the secret contains
    ///   whitespace or a control character (it could not travel in a header intact).
    public init(_ text: String) throws(SecretError) {
        let trimmed = BearerSecret.trimmed(Array(text.utf8))
        guard !trimmed.isEmpty else { throw SecretError(path: nil, reason: .empty) }
        guard trimmed.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            throw SecretError(path: nil, reason: .invalidCharacter)
        }
        self.bytes = trimmed
    }

    /// Reads a secret from the file at `path`: its whole content, trimmed of surrounding
    /// whitespace (so a trailing newline does not matter).
    ///
    /// - Throws: ``SecretError`` naming the file when it is missing, unreadable, empty, or holds
    ///   whitespace or control characters inside the secret.
    public static func read(fromFile path: String) throws(SecretError) -> BearerSecret {
        let data = try contents(ofFile: path)
        let trimmed = BearerSecret.trimmed(Array(data))
        guard !trimmed.isEmpty else { throw SecretError(path: path, reason: .empty) }
        guard trimmed.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            throw SecretError(path: path, reason: .invalidCharacter)
        }
        return BearerSecret(trusted: trimmed)
    }

    /// The bytes of a secret or token file, or the error that names it.
    static func contents(ofFile path: String) throws(SecretError) -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let missing = !FileManager.default.fileExists(atPath: path)
            throw SecretError(path: path, reason: missing ? .missing : .unreadable("\(error)"))
        }
    }

    private init(trusted bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The header value that presents this secret: `Bearer <secret>`. Put it in a request header
    /// and nowhere else.
    public var authorizationHeaderValue: String {
        "Bearer " + String(decoding: bytes, as: UTF8.self)
    }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "BearerSecret(<redacted>)" }

    /// Whether `candidate` equals this secret, comparing every byte whatever the first difference.
    ///
    /// Only the length can leak through timing, and the length of a secret is not a secret worth
    /// keeping at the cost of padding.
    public func matches(_ candidate: some Collection<UInt8>) -> Bool {
        var difference = UInt8(truncatingIfNeeded: bytes.count ^ candidate.count)
        var index = 0
        for byte in candidate {
            // Compare against our own bytes cyclically so that the loop's work depends on the
            // candidate's length only.
            let own = bytes.isEmpty ? 0 : bytes[index % bytes.count]
            difference |= own ^ byte
            index += 1
        }
        if bytes.count != candidate.count { difference |= 1 }
        return difference == 0
    }

    static func trimmed(_ bytes: [UInt8]) -> [UInt8] {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else {
            return []
        }
        return Array(bytes[first...last])
    }
}

/// Why a secret could not be loaded. The message names the file but never shows its content.
public struct SecretError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong with a secret.
    public enum Reason: Hashable, Sendable {
        case missing
        case unreadable(String)
        case empty
        case invalidCharacter
        /// A line of a token file is malformed (its number, from 1, and what is wrong).
        case badLine(Int, String)
    }

    /// The file the secret was read from, when it came from one.
    public var path: String?
    /// What is wrong with the secret.
    public var reason: Reason

    /// Makes an error.
    public init(path: String?, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    public var description: String {
        let source = path.map { "secret file \($0)" } ?? "secret"
        switch reason {
        case .missing:
            return "\(source) does not exist; create it with the shared secret (one line)"
        case .unreadable(let cause):
            return "\(source) cannot be read (\(cause)); check its permissions"
        case .empty:
            return "\(source) is empty; put the shared secret in it"
        case .invalidCharacter:
            return "\(source) contains whitespace or a control character inside the secret; use printable characters only"
        case .badLine(let line, let problem):
            return "\(source), line \(line): \(problem); write one token per line, optionally as name:token"
        }
    }
}
