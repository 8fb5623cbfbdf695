import ArbiterCore
import Foundation

/// Conversions between the values of ArbiterCore and what the tables store, shared by the
/// coordinator's and the participant's stores. Decoding never trusts the file: a malformed value
/// is reported as ``StorageError/Code/corrupt``, never a crash.
enum Stored {
    /// Unix milliseconds, the unit of every `*_at_ms` column.
    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000)
    }

    static func date(_ milliseconds: Int64?) -> Date? {
        milliseconds.map(date)
    }

    static func txid(_ text: String) throws(StorageError) -> TxID {
        do {
            return try TxID(text)
        } catch {
            throw StorageError(.corrupt, "the stored transaction id \(text.debugDescription) is invalid (\(error)); the database was modified outside Arbiter", cause: error)
        }
    }

    static func value<T: RawRepresentable<String>>(_ type: T.Type, _ text: String, column: String) throws(StorageError) -> T {
        guard let value = T(rawValue: text) else {
            throw StorageError(.corrupt, "the stored \(column) \(text.debugDescription) is not one Arbiter writes; the database was modified outside Arbiter")
        }
        return value
    }

    static func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String, column: String) throws(StorageError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw StorageError(.corrupt, "the stored \(column) is not the JSON Arbiter writes (\(error)); the database was modified outside Arbiter", cause: error)
        }
    }

    /// `strings` as a JSON array of strings.
    ///
    /// Written by hand, like ``jsonObject(_:)``: JSONEncoder cost more than the rest of a commit
    /// decision's write (a perf profile of the forced-decision benchmark), and these columns only
    /// ever hold strings. They are read back with JSONDecoder.
    static func jsonArray(_ strings: some Sequence<String>) -> String {
        var json = "["
        for (index, string) in strings.enumerated() {
            if index > 0 { json += "," }
            appendJSONString(string, to: &json)
        }
        return json + "]"
    }

    /// `members` as a JSON object whose values are strings, in the order given.
    static func jsonObject(_ members: KeyValuePairs<String, String>) -> String {
        var json = "{"
        for (index, (key, value)) in members.enumerated() {
            if index > 0 { json += "," }
            appendJSONString(key, to: &json)
            json += ":"
            appendJSONString(value, to: &json)
        }
        return json + "}"
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `string` as a JSON string literal (RFC 8259 §7: escape the quote, the backslash and
    /// the control characters; everything else stays as it is, in UTF-8).
    static func appendJSONString(_ string: String, to json: inout String) {
        json += "\""
        defer { json += "\"" }
        // Ids and payloads rarely need escaping: copy them whole.
        if !string.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            json += string
            return
        }
        // Payloads are JSON themselves, so they do have quotes: escape byte by byte (every byte to
        // escape is ASCII; the bytes of other characters are copied as they are), then append once.
        var escaped: [UInt8] = []
        escaped.reserveCapacity(string.utf8.count + 16)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                escaped.append(UInt8(ascii: "\\"))
                escaped.append(byte)
            case 0x0A:
                escaped.append(UInt8(ascii: "\\"))
                escaped.append(UInt8(ascii: "n"))
            case 0x0D:
                escaped.append(UInt8(ascii: "\\"))
                escaped.append(UInt8(ascii: "r"))
            case 0x09:
                escaped.append(UInt8(ascii: "\\"))
                escaped.append(UInt8(ascii: "t"))
            case 0..<0x20:
                escaped.append(contentsOf: "\\u00".utf8)
                escaped.append(hexDigits[Int(byte >> 4)])
                escaped.append(hexDigits[Int(byte & 0x0F)])
            default:
                escaped.append(byte)
            }
        }
        json += String(decoding: escaped, as: UTF8.self)
    }
}
