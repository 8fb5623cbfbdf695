public import ArbiterHTTP
import Foundation
import Synchronization

/// The participants a coordinator talks to, and the credential it presents to each.
///
/// A coordinator sends its protocol credential only to the participants an operator registered:
/// a branch that names anything else is refused with 400 `unknown_participant` before anything is
/// sent, so a client cannot make the coordinator call an internal URL or collect its credential
/// at a URL of the client's own. A branch names a participant by its registered name (`bank-a`)
/// or by its registered base URL.
///
/// The registry file has one participant per line, `NAME URL [SECRET_FILE]`; blank lines and lines
/// starting with `#` are skipped. `SECRET_FILE` (relative paths are relative to the registry's
/// directory) holds the credential for that participant alone; without it the coordinator's
/// `--secret-file` secret is used. ``reload()`` re-reads the file (the coordinator does on SIGHUP).
///
/// ``open`` accepts any http(s) URL with the shared secret: for experiments on one machine only.
public final class ParticipantRegistry: Sendable {
    /// One registered participant.
    public struct Entry: Sendable {
        /// The name branches may use instead of the URL.
        public var name: String
        /// The base URL (normalized: no trailing slash).
        public var url: String
        /// The credential for this participant; `nil`: the coordinator's protocol secret.
        public var secret: BearerSecret?

        /// Makes an entry.
        public init(name: String, url: String, secret: BearerSecret? = nil) {
            self.name = name
            self.url = url
            self.secret = secret
        }
    }

    private struct Table: Sendable {
        var entries: [Entry] = []
        var byName: [String: Int] = [:]
        var byURL: [String: Int] = [:]
    }

    /// `nil` for the open registry.
    private let path: String?
    private let limits: WireLimits
    private let table: Mutex<Table>

    /// Whether any http(s) URL is accepted (no registry).
    public var isOpen: Bool { openMode }
    private let openMode: Bool

    /// Accepts any participant URL and sends it the shared secret. Unsafe: a client can then make
    /// the coordinator call any URL with its credential. For experiments on one machine only.
    public static func open(limits: WireLimits = .default) -> ParticipantRegistry {
        ParticipantRegistry(path: nil, table: Table(), limits: limits, openMode: true)
    }

    /// A fixed registry of `entries` (no file to reload).
    ///
    /// - Throws: ``RegistryError`` when a name or URL is invalid or used twice.
    public convenience init(_ entries: [Entry], limits: WireLimits = .default) throws(RegistryError) {
        let table = try Self.table(entries.enumerated().map { ($0.offset + 1, $0.element) }, path: nil, limits: limits)
        self.init(path: nil, table: table, limits: limits, openMode: false)
    }

    /// The registry in the file at `path` (see the type's documentation for its format).
    ///
    /// - Throws: ``RegistryError`` naming the file and line of the first problem.
    public convenience init(file path: String, limits: WireLimits = .default) throws(RegistryError) {
        let table = try Self.read(path, limits: limits)
        self.init(path: path, table: table, limits: limits, openMode: false)
    }

    private init(path: String?, table: Table, limits: WireLimits, openMode: Bool) {
        self.path = path
        self.limits = limits
        self.table = Mutex(table)
        self.openMode = openMode
    }

    /// Re-reads the registry file and returns how many participants it registers. On an error the
    /// registry stays as it was.
    ///
    /// - Throws: ``RegistryError`` when the file cannot be read or is malformed.
    @discardableResult
    public func reload() throws(RegistryError) -> Int {
        guard let path else { return count }
        let fresh = try Self.read(path, limits: limits)
        table.withLock { $0 = fresh }
        return fresh.entries.count
    }

    /// How many participants are registered.
    public var count: Int { table.withLock { $0.entries.count } }

    /// The registered participants, in file order.
    public var entries: [Entry] { table.withLock { $0.entries } }

    /// The base URL of the participant a branch names (`text`: a registered name or URL).
    ///
    /// - Throws: ``APIError`` `unknown_participant` when nothing registered matches; the usual
    ///   URL errors in the open mode.
    public func resolve(_ text: String, field: String) throws(APIError) -> String {
        if openMode { return try WireValidation.serviceURL(text, field: field, limits: limits) }
        let url = table.withLock { table -> String? in
            if let index = table.byName[text] { return table.entries[index].url }
            if let index = table.byURL[Self.normalized(text)] { return table.entries[index].url }
            return nil
        }
        guard let url else {
            throw APIError(
                status: .badRequest, code: .unknownParticipant,
                message: "`\(field)`: \(WireValidation.abbreviated(text).debugDescription) is not a registered participant; name one of the coordinator's registry (by name or URL), or ask its operator to register it",
                field: field)
        }
        return url
    }

    /// The credential to present to the participant at `url`: its own when the registry gives one,
    /// `fallback` when it is registered without one (or the registry is open), `nil` when it is
    /// not registered — then nothing may be sent to it.
    public func secret(for url: String, fallback: BearerSecret) -> BearerSecret? {
        if openMode { return fallback }
        return table.withLock { table -> BearerSecret? in
            guard let index = table.byURL[url] else { return nil }
            return table.entries[index].secret ?? fallback
        }
    }

    /// The participants' own credentials (those the registry gives), which the coordinator accepts
    /// on the inquiry route.
    public var participantTokens: [NamedToken] {
        table.withLock { table in
            table.entries.compactMap { entry in entry.secret.map { NamedToken(name: entry.name, secret: $0) } }
        }
    }

    // MARK: - Reading

    private static func read(_ path: String, limits: WireLimits) throws(RegistryError) -> Table {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let missing = !FileManager.default.fileExists(atPath: path)
            throw RegistryError(path: path, line: nil,
                message: missing ? "the file does not exist; create it with one `NAME URL [SECRET_FILE]` line per participant" : "cannot be read (\(error.localizedDescription))")
        }
        let directory = (path as NSString).deletingLastPathComponent
        var lines: [(Int, Entry)] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count == 2 || fields.count == 3 else {
                throw RegistryError(path: path, line: index + 1, message: "expected `NAME URL [SECRET_FILE]`, found \(fields.count) fields")
            }
            var secret: BearerSecret?
            if fields.count == 3 {
                let file = fields[2].hasPrefix("/") ? fields[2] : (directory as NSString).appendingPathComponent(fields[2])
                do {
                    secret = try BearerSecret.read(fromFile: file)
                } catch {
                    throw RegistryError(path: path, line: index + 1, message: "\(error)")
                }
            }
            lines.append((index + 1, Entry(name: fields[0], url: fields[1], secret: secret)))
        }
        return try table(lines, path: path, limits: limits)
    }

    private static func table(_ lines: [(Int, Entry)], path: String?, limits: WireLimits) throws(RegistryError) -> Table {
        var table = Table()
        for (line, entry) in lines {
            guard isValidName(entry.name) else {
                throw RegistryError(path: path, line: line,
                    message: "the name \(entry.name.debugDescription) must be 1...64 characters from [A-Za-z0-9._-] and not a URL")
            }
            let url: String
            do {
                url = try WireValidation.serviceURL(entry.url, field: "url", limits: limits)
            } catch {
                throw RegistryError(path: path, line: line, message: "\(entry.name): \(error.message)")
            }
            guard table.byName[entry.name] == nil else {
                throw RegistryError(path: path, line: line, message: "the name \(entry.name) is registered twice")
            }
            guard table.byURL[url] == nil else {
                throw RegistryError(path: path, line: line, message: "the URL \(url) is registered twice")
            }
            table.byName[entry.name] = table.entries.count
            table.byURL[url] = table.entries.count
            table.entries.append(Entry(name: entry.name, url: url, secret: entry.secret))
        }
        return table
    }

    private static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-")
        }
    }

    /// A URL as the registry keys it: trailing slashes dropped.
    private static func normalized(_ text: String) -> String {
        var text = Substring(text)
        while text.last == "/" { text = text.dropLast() }
        return String(text)
    }
}

/// Why a participant registry could not be loaded: the file, the line, and what to fix.
public struct RegistryError: Error, Sendable, CustomStringConvertible {
    /// The registry file, when the registry came from one.
    public var path: String?
    /// The line (from 1) of the problem, when it is on one line.
    public var line: Int?
    /// What is wrong.
    public var message: String

    public var description: String {
        let place = [path.map { "participant registry \($0)" } ?? "participant registry", line.map { "line \($0)" }]
            .compactMap { $0 }.joined(separator: ", ")
        return "\(place): \(message)"
    }
}
