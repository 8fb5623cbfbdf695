import NIOCore
public import PostgresNIO

/// One SQL statement and its parameters, as a stage sends it: written like a PostgresNIO
/// `PostgresQuery`, with values interpolated as parameters (`$1`, `$2`… on the wire), never
/// spliced into the text.
///
/// ```swift
/// try context.execute("UPDATE accounts SET balance = balance + \(delta) WHERE id = \(id)")
/// ```
///
/// Any `PostgresEncodable` value may be interpolated (`Int`, `String`, `Bool`, `Double`, `UUID`,
/// `Date`, `ByteBuffer`, arrays of them, optionals for `NULL`); PostgresNIO's encoders write them.
public struct PostgresStatement: Sendable, Hashable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// A parameter's type, wire format and encoded value (`nil`: `NULL`).
    struct Parameter: Sendable, Hashable {
        var type: PostgresDataType
        var format: PostgresFormat
        var value: ByteBuffer?
    }

    /// The SQL, with `$n` where each parameter goes.
    public var sql: String
    var parameters: [Parameter]

    /// A statement whose SQL is taken as it is: nothing in it is a parameter. Never build it from
    /// untrusted text.
    public init(unsafeSQL sql: String) {
        self.sql = sql
        parameters = []
    }

    public init(stringLiteral value: String) {
        self.init(unsafeSQL: value)
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        parameters = stringInterpolation.parameters
    }

    /// The SQL and how many parameters it has (never their values: they may be secrets).
    public var description: String { "\(sql) [\(parameters.count) parameters]" }

    /// Builds a statement from literals and interpolated parameters.
    public struct StringInterpolation: StringInterpolationProtocol, Sendable {
        public typealias StringLiteralType = String
        var sql = ""
        var parameters: [Parameter] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + 3 * interpolationCount)
            parameters.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        /// A parameter.
        public mutating func appendInterpolation<Value: PostgresDynamicTypeEncodable>(_ value: Value) {
            var buffer = ByteBuffer()
            value.encode(into: &buffer, context: .default)
            append(Parameter(type: value.psqlType, format: value.psqlFormat, value: buffer))
        }

        /// A parameter, `NULL` when `value` is nil.
        public mutating func appendInterpolation<Value: PostgresDynamicTypeEncodable>(_ value: Value?) {
            guard let value else { return append(Parameter(type: .null, format: .binary, value: nil)) }
            appendInterpolation(value)
        }

        /// A parameter whose encoding may fail (JSON, for one).
        public mutating func appendInterpolation<Value: PostgresThrowingDynamicTypeEncodable>(_ value: Value) throws {
            var buffer = ByteBuffer()
            try value.encode(into: &buffer, context: .default)
            append(Parameter(type: value.psqlType, format: value.psqlFormat, value: buffer))
        }

        /// Text put into the SQL as it is: a table's name, say. Never pass untrusted text.
        public mutating func appendInterpolation(unescaped text: String) {
            sql += text
        }

        private mutating func append(_ parameter: Parameter) {
            parameters.append(parameter)
            sql += "$\(parameters.count)"
        }
    }
}

/// A row a statement returned.
public struct PostgresStageRow: Sendable {
    /// The row's values, in column order.
    public let cells: [PostgresCell]

    init(cells: [PostgresCell]) {
        self.cells = cells
    }

    /// Copies a PostgresNIO row.
    init(_ row: PostgresRow) {
        cells = Array(row)
    }

    /// The value of column `index` (from 0) as a `T` (an optional for a column that may be `NULL`).
    public func decode<T: PostgresDecodable>(_ type: T.Type, column index: Int) throws(PostgresParticipantError) -> T {
        guard cells.indices.contains(index) else {
            throw PostgresParticipantError(.statementFailed, "the row has \(cells.count) columns, not \(index + 1)")
        }
        do {
            return try cells[index].decode(T.self)
        } catch {
            throw PostgresParticipantError(.statementFailed, "column \(cells[index].columnName) does not decode as \(T.self): \(error)")
        }
    }

    /// The value of the column named `name` as a `T`.
    public func decode<T: PostgresDecodable>(_ type: T.Type, column name: String) throws(PostgresParticipantError) -> T {
        guard let index = cells.firstIndex(where: { $0.columnName == name }) else {
            throw PostgresParticipantError(.statementFailed, "the row has no column \(name)")
        }
        return try decode(type, column: index)
    }
}
