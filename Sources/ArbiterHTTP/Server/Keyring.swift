#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// A named bearer token: the name tells holders apart in logs and audit records and never
/// authenticates anything by itself.
public struct NamedToken: Sendable, CustomStringConvertible {
    /// Who holds the token (`alice`, `billing-service`); shown in logs and audit records.
    public var name: String
    /// The token itself.
    public var secret: BearerSecret

    /// Makes a named token.
    public init(name: String, secret: BearerSecret) {
        self.name = name
        self.secret = secret
    }

    public var description: String { "\(name):<redacted>" }

    /// Reads a token file: one token per line, optionally `name:token` (the name is everything
    /// before the first `:`); blank lines and lines starting with `#` are skipped. A token without
    /// a name is called `DEFAULT-N`, N its line number, so that every token has a name to log.
    ///
    /// A file holding a single token and nothing else is also a valid secret file, so one file can
    /// serve both as `--secret-file` and as a token list.
    ///
    /// - Throws: ``SecretError`` naming the file and line when it is missing or unreadable, holds
    ///   no token, a token or name with whitespace or control characters, or a name used twice.
    public static func read(fromFile path: String, defaultName: String = "token") throws(SecretError) -> [NamedToken] {
        let data = try BearerSecret.contents(ofFile: path)
        return try parse(String(decoding: data, as: UTF8.self), path: path, defaultName: defaultName)
    }

    /// Parses the content of a token file (see ``read(fromFile:defaultName:)``).
    public static func parse(_ text: String, path: String?, defaultName: String = "token") throws(SecretError) -> [NamedToken] {
        var tokens: [NamedToken] = []
        var names: Set<String> = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let lineNumber = index + 1
            let name: String
            let token: Substring
            if let colon = line.firstIndex(of: ":") {
                name = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
                token = line[line.index(after: colon)...]
                guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
                    throw SecretError(path: path, reason: .badLine(lineNumber, "the name before `:` is empty or holds whitespace"))
                }
            } else {
                name = "\(defaultName)-\(lineNumber)"
                token = Substring(line)
            }
            let secret: BearerSecret
            do {
                secret = try BearerSecret(String(token))
            } catch {
                throw SecretError(path: path, reason: .badLine(lineNumber, "\(error.reason == .empty ? "no token after the name" : "the token holds whitespace or a control character")"))
            }
            guard names.insert(name).inserted else {
                throw SecretError(path: path, reason: .badLine(lineNumber, "the name \(name) is used twice; give every token its own name"))
            }
            tokens.append(NamedToken(name: name, secret: secret))
        }
        guard !tokens.isEmpty else { throw SecretError(path: path, reason: .empty) }
        return tokens
    }
}

/// Who may call a route: the roles of Arbiter's credentials.
public enum CredentialRole: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Submits transactions and reads them (`ArbiterClient`, the bank's own API).
    case client
    /// The coordinator↔participant protocol: prepare, commit, abort, batch at a participant, and a
    /// participant's in-doubt inquiry at the coordinator.
    case participant
    /// Lists transactions, reads the audit trail, decides heuristically.
    case `operator`

    public var description: String { rawValue }
}

/// The credentials a service accepts, by role, replaceable at run time (token files are re-read on
/// SIGHUP without a restart).
///
/// A token may belong to several roles (the single-secret mode, where one shared secret is client
/// and participant alike). Lookups compare against every token of every role so that the time
/// taken does not tell which one matched.
public final class Keyring: Sendable {
    private let tokens: Mutex<[CredentialRole: [NamedToken]]>

    /// Makes a keyring holding `tokens` for each role.
    public init(_ tokens: [CredentialRole: [NamedToken]]) {
        self.tokens = Mutex(tokens)
    }

    /// Replaces the tokens of every role given (the others stay).
    public func replace(_ tokens: [CredentialRole: [NamedToken]]) {
        self.tokens.withLock { current in
            for (role, list) in tokens { current[role] = list }
        }
    }

    /// Whether any token is held for `role`.
    public func hasTokens(for role: CredentialRole) -> Bool {
        tokens.withLock { !($0[role] ?? []).isEmpty }
    }

    /// Who presents `authorizationHeader`: the matching token's name and its roles, or `nil` when
    /// the header is missing, malformed or presents no known token.
    public func identify(_ authorizationHeader: String?) -> (name: String, roles: Set<CredentialRole>)? {
        guard let authorizationHeader, let token = Self.bearerToken(authorizationHeader) else { return nil }
        let snapshot = tokens.withLock { $0 }
        var name: String?
        var roles: Set<CredentialRole> = []
        for (role, list) in snapshot {
            for candidate in list where candidate.secret.matches(token) {
                name = name ?? candidate.name
                roles.insert(role)
            }
        }
        return name.map { ($0, roles) }
    }

    /// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1).
    static func bearerToken(_ header: String) -> ArraySlice<UInt8>? {
        let utf8 = Array(header.utf8)
        let scheme = Array("bearer ".utf8)
        guard utf8.count > scheme.count else { return nil }
        for index in 0..<scheme.count where utf8[index] | 0x20 != scheme[index] | 0x20 {
            return nil
        }
        return utf8[scheme.count...]
    }
}
