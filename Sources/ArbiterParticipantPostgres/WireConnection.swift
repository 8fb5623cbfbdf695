import ArbiterPostgres
import Crypto
import Foundation
import NIOCore
import PostgresNIO
#if canImport(Glibc)
import Glibc
private let streamSocket = Int32(SOCK_STREAM.rawValue)
private let sendFlags = Int32(MSG_NOSIGNAL)
#elseif canImport(Darwin)
import Darwin
private let streamSocket = SOCK_STREAM
private let sendFlags: Int32 = 0
#endif

/// `close(2)`, out of reach of the class's own `close()`.
private func closeDescriptor(_ descriptor: Int32) {
    _ = close(descriptor)
}

/// One connection to PostgreSQL speaking its frontend/backend protocol (version 3) over a blocking
/// socket, from the thread that uses it: no event loop, no hand-off between threads.
///
/// It exists for pipelining. A participant's prepare is a handful of statements (its row, `BEGIN`,
/// the stage's SQL, the marker, `PREPARE TRANSACTION`); sent one at a time, each costs a round
/// trip to the server and a wake-up of the waiting thread. Here ``enqueue(_:)`` only writes the
/// statement's messages (`Parse`, `Bind`, `Describe`, `Execute`, `Sync`) into a buffer, and
/// ``exchange()`` sends everything queued in one write and reads the answers in order: the whole
/// prepare is one round trip. Each statement ends with its own `Sync`, so each behaves as if sent
/// alone: outside `BEGIN` it commits by itself, a failure skips nothing after it, and a failure
/// inside a transaction block leaves the block failed for the statements that follow (and
/// `PREPARE TRANSACTION` of a failed block answers `ROLLBACK`), as with separate queries.
///
/// Values are sent and rows received in PostgresNIO's binary formats, through its public
/// `PostgresEncodable` and `PostgresDecodable` conformances. Authentication: trust, password,
/// MD5 and SCRAM-SHA-256. No TLS: the participant and its database are expected to share a host
/// or a private network (as with the participant's connections before).
final class WireConnection {
    /// One statement's answer.
    struct Answer {
        var rows: [PostgresStageRow] = []
        /// The command tag (`UPDATE 1`, `PREPARE TRANSACTION`, `ROLLBACK`…).
        var tag = ""
        /// Rows changed (`INSERT`, `UPDATE`, `DELETE`) or returned (`SELECT`).
        var count: Int {
            if let last = tag.split(separator: " ").last, let count = Int(last) { return count }
            return rows.count
        }
        var command: String {
            let words = tag.split(separator: " ")
            guard let last = words.last, Int(last) != nil else { return tag }
            return words.dropLast().filter { Int($0) == nil }.joined(separator: " ")
        }
    }

    let location: PostgresLocation
    private var descriptor: Int32
    private var output: [UInt8] = []
    private var pending = 0
    /// The named prepared statements this session has, by text and parameter types.
    private var prepared: [PreparedKey: String] = [:]
    private var preparedNameCount = 0
    /// The queued statements that parse a new named statement: forgotten again if the parse fails.
    private var parsing: [(index: Int, key: PreparedKey)] = []
    static var preparedCountMax: Int { 256 }

    private struct PreparedKey: Hashable {
        var sql: String
        var types: [UInt32]
    }
    /// Bytes read and not yet taken: `input[inputStart..<inputEnd]`.
    private var input = [UInt8](repeating: 0, count: 65_536)
    private var inputStart = 0
    private var inputEnd = 0
    /// Set once the connection cannot be used any more.
    private(set) var isBroken = false

    private init(location: PostgresLocation, descriptor: Int32) {
        self.location = location
        self.descriptor = descriptor
    }

    deinit { if descriptor >= 0 { closeDescriptor(descriptor) } }

    /// Connects within `timeout`, authenticates and starts a session with `settings` (run-time
    /// parameters such as `lock_timeout`, sent in the start-up message: no round trip of their
    /// own). From then on a read or write that waits longer than `answerTimeout` (a server or
    /// network that hangs without closing the connection) breaks the connection with
    /// `unavailable`, so that a worker never waits forever.
    static func open(_ location: PostgresLocation, settings: [(String, String)], timeout: Duration,
                     answerTimeout: Duration) throws(PostgresParticipantError) -> WireConnection {
        let descriptor = try connectSocket(host: location.host, port: location.port, timeout: timeout, answerTimeout: answerTimeout)
        let connection = WireConnection(location: location, descriptor: descriptor)
        try connection.start(settings: settings)
        return connection
    }

    /// Closes the socket (with a `Terminate` message, so the server ends the session at once).
    func close() {
        guard descriptor >= 0 else { return }
        if !isBroken {
            Message(appendingTo: &output, type: UInt8(ascii: "X")).finish(into: &output)
            _ = try? write()
        }
        closeDescriptor(descriptor)
        descriptor = -1
        isBroken = true
    }

    // MARK: - Statements

    /// Queues `statement` for the next ``exchange()``.
    ///
    /// A statement with parameters is parsed once per connection, as a named prepared statement
    /// kept by its text and parameter types, and only bound and executed after that: PostgreSQL
    /// then neither parses nor, after a few runs, plans it again (its plan cache). At most
    /// ``preparedCountMax`` are kept; others go unnamed.
    func enqueue(_ statement: PostgresStatement) {
        var name = ""
        var parse = true
        if !statement.parameters.isEmpty {
            let key = PreparedKey(sql: statement.sql, types: statement.parameters.map(\.type.rawValue))
            if let known = prepared[key] {
                name = known
                parse = false
            } else if prepared.count < Self.preparedCountMax {
                preparedNameCount += 1
                name = "arbiter_\(preparedNameCount)"
                prepared[key] = name
                parsing.append((index: pending, key: key))
            }
        }
        if parse {
            var message = Message(appendingTo: &output, type: UInt8(ascii: "P"))
            message.cString(name)
            message.cString(statement.sql)
            message.int16(statement.parameters.count)
            for parameter in statement.parameters { message.int32(Int(parameter.type.rawValue)) }
            message.finish(into: &output)
        }

        var bind = Message(appendingTo: &output, type: UInt8(ascii: "B"))
        bind.cString("")
        bind.cString(name)
        bind.int16(statement.parameters.count)
        for parameter in statement.parameters { bind.int16(parameter.format == .binary ? 1 : 0) }
        bind.int16(statement.parameters.count)
        for parameter in statement.parameters {
            if let value = parameter.value {
                bind.int32(value.readableBytes)
                bind.bytes(value.readableBytesView)
            } else {
                bind.int32(-1)
            }
        }
        bind.int16(1)
        bind.int16(1)
        bind.finish(into: &output)

        var describe = Message(appendingTo: &output, type: UInt8(ascii: "D"))
        describe.byte(UInt8(ascii: "P"))
        describe.cString("")
        describe.finish(into: &output)

        var execute = Message(appendingTo: &output, type: UInt8(ascii: "E"))
        execute.cString("")
        execute.int32(0)
        execute.finish(into: &output)

        Message(appendingTo: &output, type: UInt8(ascii: "S")).finish(into: &output)
        pending += 1
    }

    /// Sends every queued statement in one write and reads their answers, in order: an answer, or
    /// the server's refusal of that statement. Throws `unavailable` when the connection broke
    /// (then some of the statements may have run, and the connection is not to be used again).
    func exchange() throws(PostgresParticipantError) -> [Result<Answer, PostgresParticipantError>] {
        guard !isBroken else { throw PostgresParticipantError(.unavailable, "the connection to \(location) is closed") }
        let count = pending
        pending = 0
        do throws(PostgresParticipantError) {
            try write()
            var answers: [Result<Answer, PostgresParticipantError>] = []
            answers.reserveCapacity(count)
            var parsed: [Bool] = []
            for _ in 0..<count {
                let (answer, parseCompleted) = try readAnswer()
                answers.append(answer)
                parsed.append(parseCompleted)
            }
            // A statement whose parse failed was not prepared: parse it again next time.
            for entry in parsing where !parsed[entry.index] { prepared[entry.key] = nil }
            parsing.removeAll()
            // Statements the server no longer has (after a DISCARD ALL, say) or whose plan no
            // longer fits (a table changed under them) are all parsed again.
            if answers.contains(where: { if case .failure(let error) = $0 { error.sqlState == "26000" || error.sqlState == "0A000" } else { false } }) {
                prepared.removeAll()
            }
            return answers
        } catch {
            output.removeAll(keepingCapacity: true)
            parsing.removeAll()
            broke()
            throw error
        }
    }

    /// Reads one statement's messages, up to its `ReadyForQuery`.
    /// Also says whether it parsed (a `ParseComplete` came).
    private func readAnswer() throws(PostgresParticipantError) -> (Result<Answer, PostgresParticipantError>, Bool) {
        var answer = Answer()
        var parsed = false
        var columns: [(name: String, type: PostgresDataType, format: PostgresFormat)] = []
        var failure: PostgresParticipantError?
        while true {
            var (type, body) = try readMessage()
            switch type {
            case UInt8(ascii: "1"):
                parsed = true
            case UInt8(ascii: "2"), UInt8(ascii: "n"), UInt8(ascii: "I"), UInt8(ascii: "N"),
                 UInt8(ascii: "S"), UInt8(ascii: "A"), UInt8(ascii: "s"):
                // ParseComplete, BindComplete, NoData, EmptyQuery, notice, parameter status,
                // notification, portal suspended: nothing to keep.
                continue
            case UInt8(ascii: "T"):
                let count = body.int16()
                columns.removeAll(keepingCapacity: true)
                for _ in 0..<max(0, count) {
                    let name = body.cString()
                    _ = body.int32()
                    _ = body.int16()
                    let type = PostgresDataType(UInt32(truncatingIfNeeded: body.int32()))
                    _ = body.int16()
                    _ = body.int32()
                    let format: PostgresFormat = body.int16() == 1 ? .binary : .text
                    columns.append((name, type, format))
                }
            case UInt8(ascii: "D"):
                let count = body.int16()
                var cells: [PostgresCell] = []
                cells.reserveCapacity(count)
                for index in 0..<max(0, count) {
                    let length = body.int32()
                    let bytes: ByteBuffer? = length < 0 ? nil : ByteBuffer(bytes: body.take(length))
                    let column = index < columns.count ? columns[index] : (name: "?column?", type: PostgresDataType.text, format: PostgresFormat.text)
                    cells.append(PostgresCell(bytes: bytes, dataType: column.type, format: column.format, columnName: column.name, columnIndex: index))
                }
                answer.rows.append(PostgresStageRow(cells: cells))
            case UInt8(ascii: "C"):
                answer.tag = body.cString()
            case UInt8(ascii: "E"):
                let error = Self.serverError(&body)
                if error.fatal {
                    broke()
                    throw PostgresParticipantError(.unavailable, "\(error.message) (SQLSTATE \(error.code))", sqlState: error.code)
                }
                failure = PostgresParticipantError(.statementFailed, error.message, sqlState: error.code)
            case UInt8(ascii: "Z"):
                if let failure { return (.failure(failure), parsed) }
                return (.success(answer), parsed)
            default:
                throw PostgresParticipantError(.unavailable, "\(location) sent an unexpected message (type \(type)); the connection is dropped")
            }
        }
    }

    // MARK: - Start-up and authentication

    private func start(settings: [(String, String)]) throws(PostgresParticipantError) {
        var startup = Message(appendingTo: &output, type: nil)
        startup.int32(196_608)
        startup.cString("user"); startup.cString(location.user)
        startup.cString("database"); startup.cString(location.database)
        startup.cString("application_name"); startup.cString("arbiter-participant")
        if !settings.isEmpty {
            startup.cString("options")
            startup.cString(settings.map { "-c \($0.0)=\($0.1)" }.joined(separator: " "))
        }
        startup.cString("")
        startup.finish(into: &output)
        try write()
        var scram: Scram?
        var serverSignature: [UInt8]?
        while true {
            var (type, body) = try readMessage()
            switch type {
            case UInt8(ascii: "R"):
                let kind = body.int32()
                switch kind {
                case 0:
                    continue
                case 3:
                    try sendPassword(Array(password().utf8))
                case 5:
                    let salt = body.take(4)
                    let inner = Self.hex(Insecure.MD5.hash(data: Array((try password() + location.user).utf8)))
                    try sendPassword(Array(("md5" + Self.hex(Insecure.MD5.hash(data: Array(inner.utf8) + salt))).utf8))
                case 10:
                    var mechanisms: [String] = []
                    while body.remaining > 1 { mechanisms.append(body.cString()) }
                    guard mechanisms.contains("SCRAM-SHA-256") else {
                        throw PostgresParticipantError(.unavailable, "\(location) offers SASL mechanisms \(mechanisms) and Arbiter speaks only SCRAM-SHA-256")
                    }
                    let started = Scram(password: try password())
                    scram = started
                    var message = Message(appendingTo: &output, type: UInt8(ascii: "p"))
                    message.cString("SCRAM-SHA-256")
                    let first = Array(started.clientFirst.utf8)
                    message.int32(first.count)
                    message.bytes(first)
                    message.finish(into: &output)
                    try write()
                case 11:
                    guard let scram else { throw protocolViolation("a SCRAM continuation before its start") }
                    let (final, signature) = try scram.clientFinal(serverFirst: String(decoding: body.rest(), as: UTF8.self), location: location)
                    serverSignature = signature
                    var message = Message(appendingTo: &output, type: UInt8(ascii: "p"))
                    message.bytes(Array(final.utf8))
                    message.finish(into: &output)
                    try write()
                case 12:
                    guard let serverSignature else { throw protocolViolation("a SCRAM end before its continuation") }
                    try Scram.verify(serverFinal: String(decoding: body.rest(), as: UTF8.self), expected: serverSignature, location: location)
                default:
                    throw PostgresParticipantError(.unavailable, "\(location) asks for an authentication Arbiter does not speak (code \(kind)); use scram-sha-256, md5, password or trust in pg_hba.conf")
                }
            case UInt8(ascii: "E"):
                let error = Self.serverError(&body)
                throw PostgresParticipantError(.unavailable, "\(location) refused the connection: \(error.message) (SQLSTATE \(error.code))", sqlState: error.code)
            case UInt8(ascii: "Z"):
                return
            default:
                // Parameter status, backend key data, notices.
                continue
            }
        }
    }

    private func password() throws(PostgresParticipantError) -> String {
        guard let password = location.password else {
            throw PostgresParticipantError(.unavailable, "\(location) asks for a password and none was given (put it in the URL or the password file)")
        }
        return password
    }

    private func sendPassword(_ bytes: [UInt8]) throws(PostgresParticipantError) {
        var message = Message(appendingTo: &output, type: UInt8(ascii: "p"))
        message.bytes(bytes)
        message.byte(0)
        message.finish(into: &output)
        try write()
    }

    private func protocolViolation(_ what: String) -> PostgresParticipantError {
        PostgresParticipantError(.unavailable, "\(location) broke the protocol: \(what)")
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    // MARK: - Errors

    private static func serverError(_ body: inout Reader) -> (code: String, message: String, fatal: Bool) {
        var code = "XX000"
        var message = "an error without a message"
        var detail: String?
        var severity = "ERROR"
        while body.remaining > 0 {
            let field = body.byte()
            if field == 0 { break }
            let value = body.cString()
            switch field {
            case UInt8(ascii: "C"): code = value
            case UInt8(ascii: "M"): message = value
            case UInt8(ascii: "D"): detail = value
            case UInt8(ascii: "V"): severity = value
            default: break
            }
        }
        if let detail { message += " (\(detail))" }
        // FATAL and PANIC end the session; so do the shutdown and connection classes.
        let fatal = severity != "ERROR" || code.hasPrefix("57P") || code.hasPrefix("08")
        return (code, message, fatal)
    }

    private func broke() {
        guard !isBroken else { return }
        isBroken = true
        if descriptor >= 0 { closeDescriptor(descriptor); descriptor = -1 }
    }

    // MARK: - Bytes on the socket

    private func write() throws(PostgresParticipantError) {
        defer { output.removeAll(keepingCapacity: true) }
        var sent = 0
        while sent < output.count {
            let count = output.withUnsafeBytes { send(descriptor, $0.baseAddress! + sent, $0.count - sent, sendFlags) }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = errno == EAGAIN || errno == EWOULDBLOCK ? "the server took nothing in time (it or the network hangs)"
                    : String(cString: strerror(errno))
                broke()
                throw PostgresParticipantError(.unavailable, "writing to \(location) failed: \(reason)")
            }
            sent += count
        }
    }

    /// Reads one whole message: its type and its body.
    private func readMessage() throws(PostgresParticipantError) -> (UInt8, Reader) {
        try fill(5)
        let type = input[inputStart]
        let length = Int(input[inputStart + 1]) << 24 | Int(input[inputStart + 2]) << 16 | Int(input[inputStart + 3]) << 8 | Int(input[inputStart + 4])
        guard length >= 4 else { throw protocolViolation("a message of length \(length)") }
        try fill(1 + length)
        let body = Reader(bytes: Array(input[(inputStart + 5)..<(inputStart + 1 + length)]))
        inputStart += 1 + length
        return (type, body)
    }

    /// Reads until `count` bytes are buffered from `inputStart` on.
    private func fill(_ count: Int) throws(PostgresParticipantError) {
        while inputEnd - inputStart < count {
            // Make room: move what is left to the front, and grow for a message larger than the buffer.
            if inputStart == inputEnd {
                inputStart = 0
                inputEnd = 0
            } else if input.count - inputStart < count || inputEnd == input.count {
                input.withUnsafeMutableBytes { buffer in
                    buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + inputStart, byteCount: inputEnd - inputStart)
                }
                inputEnd -= inputStart
                inputStart = 0
            }
            if input.count < count { input.append(contentsOf: repeatElement(0, count: count - input.count)) }
            let end = inputEnd
            let read = input.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress! + end, $0.count - end, 0) }
            if read > 0 {
                inputEnd += read
                continue
            }
            if read < 0 && errno == EINTR { continue }
            let reason = read == 0 ? "the server closed the connection"
                : errno == EAGAIN || errno == EWOULDBLOCK ? "no answer in time (the server or the network hangs)"
                : String(cString: strerror(errno))
            broke()
            throw PostgresParticipantError(.unavailable, "reading from \(location) failed: \(reason)")
        }
    }

    private static func timeval(_ duration: Duration) -> timeval {
        let microseconds = max(1000, duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000)
        #if canImport(Darwin)
        return Darwin.timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int32(microseconds % 1_000_000))
        #else
        return Glibc.timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int(microseconds % 1_000_000))
        #endif
    }

    private static func connectSocket(host: String, port: Int, timeout: Duration, answerTimeout: Duration) throws(PostgresParticipantError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = streamSocket
        hints.ai_family = AF_UNSPEC
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &found)
        guard status == 0, let first = found else {
            throw PostgresParticipantError(.unavailable, "cannot resolve \(host): \(String(cString: gai_strerror(status))); check the host name")
        }
        defer { freeaddrinfo(first) }
        var lastError = "no address"
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let address = current {
            current = address.pointee.ai_next
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            // Connect within `timeout` (SO_SNDTIMEO bounds connect on Linux), then wait at most
            // `answerTimeout` for any read or write.
            var limit = Self.timeval(timeout)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            if connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 {
                var answer = Self.timeval(answerTimeout)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &answer, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &answer, socklen_t(MemoryLayout<timeval>.size))
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            lastError = String(cString: strerror(errno))
            closeDescriptor(fd)
        }
        throw PostgresParticipantError(.unavailable, "cannot connect to \(host):\(port) (\(lastError)); check that it is up and reachable")
    }
}

// MARK: - Messages

/// An outgoing message, written at the end of the connection's output buffer: its type byte (none
/// for the start-up message), its length (filled in by ``finish(into:)``), then the body. The
/// buffer is moved in and out, never copied.
private struct Message {
    private var body: [UInt8] = []
    private let start: Int

    init(appendingTo output: inout [UInt8], type: UInt8?) {
        swap(&body, &output)
        if let type { body.append(type) }
        start = body.count
        body.append(contentsOf: [0, 0, 0, 0])
    }

    mutating func byte(_ value: UInt8) { body.append(value) }
    mutating func bytes<C: Collection>(_ values: C) where C.Element == UInt8 { body.append(contentsOf: values) }
    mutating func int16(_ value: Int) {
        let value = UInt16(truncatingIfNeeded: value)
        body.append(UInt8(value >> 8)); body.append(UInt8(value & 0xff))
    }
    mutating func int32(_ value: Int) {
        let value = UInt32(truncatingIfNeeded: value)
        body.append(UInt8(value >> 24)); body.append(UInt8((value >> 16) & 0xff))
        body.append(UInt8((value >> 8) & 0xff)); body.append(UInt8(value & 0xff))
    }
    mutating func cString(_ value: String) {
        body.append(contentsOf: value.utf8)
        body.append(0)
    }

    /// Fills in the length and hands the buffer back.
    consuming func finish(into output: inout [UInt8]) {
        let length = UInt32(body.count - start)
        body[start] = UInt8(length >> 24); body[start + 1] = UInt8((length >> 16) & 0xff)
        body[start + 2] = UInt8((length >> 8) & 0xff); body[start + 3] = UInt8(length & 0xff)
        swap(&body, &output)
    }
}

/// Reads an incoming message's body; reading past its end yields zeros (a malformed message then
/// fails where its contents are used, never out of bounds).
private struct Reader {
    let bytes: [UInt8]
    var index = 0

    var remaining: Int { bytes.count - index }

    mutating func byte() -> UInt8 {
        guard index < bytes.count else { return 0 }
        defer { index += 1 }
        return bytes[index]
    }
    mutating func int16() -> Int { Int(Int16(bitPattern: UInt16(byte()) << 8 | UInt16(byte()))) }
    mutating func int32() -> Int {
        var value: UInt32 = 0
        for _ in 0..<4 { value = value << 8 | UInt32(byte()) }
        return Int(Int32(bitPattern: value))
    }
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, index + max(0, count))
        defer { index = end }
        return Array(bytes[index..<end])
    }
    mutating func rest() -> [UInt8] { take(remaining) }
    mutating func cString() -> String {
        let end = bytes[index...].firstIndex(of: 0) ?? bytes.count
        defer { index = min(bytes.count, end + 1) }
        return String(decoding: bytes[index..<end], as: UTF8.self)
    }
}

// MARK: - SCRAM-SHA-256

/// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: no channel
/// binding, the user name taken from the start-up message.
private struct Scram {
    let password: String
    let nonce: String
    var clientFirstBare: String { "n=,r=\(nonce)" }
    var clientFirst: String { "n,,\(clientFirstBare)" }

    init(password: String) {
        self.password = password
        var random = SystemRandomNumberGenerator()
        nonce = Data((0..<18).map { _ in UInt8.random(in: .min ... .max, using: &random) }).base64EncodedString()
    }

    /// The client's final message for the server's first, and the signature the server must
    /// answer with to prove it knows the password.
    func clientFinal(serverFirst: String, location: PostgresLocation) throws(PostgresParticipantError) -> (message: String, serverSignature: [UInt8]) {
        var fields: [Character: String] = [:]
        for part in serverFirst.split(separator: ",") where part.count >= 2 {
            fields[part.first!] = String(part.dropFirst(2))
        }
        guard let serverNonce = fields["r"], serverNonce.hasPrefix(nonce), let saltText = fields["s"],
              let salt = Data(base64Encoded: saltText), let iterations = fields["i"].flatMap({ Int($0) }), iterations > 0
        else { throw PostgresParticipantError(.unavailable, "\(location) sent a malformed SCRAM challenge") }
        let key = SymmetricKey(data: Array(password.utf8))
        // Hi(password, salt, i): PBKDF2 with HMAC-SHA-256, one block.
        var block = Array(HMAC<SHA256>.authenticationCode(for: Array(salt) + [0, 0, 0, 1], using: key))
        var salted = block
        for _ in 1..<iterations {
            block = Array(HMAC<SHA256>.authenticationCode(for: block, using: key))
            for index in salted.indices { salted[index] ^= block[index] }
        }
        let saltedKey = SymmetricKey(data: salted)
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: saltedKey))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(serverNonce)"
        let authMessage = "\(clientFirstBare),\(serverFirst),\(withoutProof)"
        let signature = Array(HMAC<SHA256>.authenticationCode(for: Array(authMessage.utf8), using: SymmetricKey(data: storedKey)))
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        let serverKey = HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: saltedKey)
        let serverSignature = Array(HMAC<SHA256>.authenticationCode(for: Array(authMessage.utf8), using: SymmetricKey(data: Array(serverKey))))
        return ("\(withoutProof),p=\(Data(proof).base64EncodedString())", serverSignature)
    }

    static func verify(serverFinal: String, expected: [UInt8], location: PostgresLocation) throws(PostgresParticipantError) {
        guard serverFinal.hasPrefix("v="), let signature = Data(base64Encoded: String(serverFinal.dropFirst(2))),
              Array(signature) == expected
        else {
            throw PostgresParticipantError(.unavailable, "\(location) did not prove it knows the password (SCRAM server signature); refusing the connection")
        }
    }
}
