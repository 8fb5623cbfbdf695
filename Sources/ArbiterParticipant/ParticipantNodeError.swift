/// Why a ``ParticipantNode`` could not start or had to stop: what went wrong (``code``), what to
/// do about it (``message``), and the error it came from (``cause``).
public struct ParticipantNodeError: Error, CustomStringConvertible {
    /// The kind of failure, for code that reacts to it.
    public enum Code: String, Hashable, Sendable {
        /// An option is out of its documented range.
        case invalidOptions
        /// The database could not be opened or migrated (see ``ParticipantNodeError/cause``).
        case cannotOpenStorage
        /// ``ParticipantNode/run()`` was called a second time; a node runs once.
        case alreadyRun
        /// The node stopped (or failed) before it was listening.
        case notListening
    }

    /// The kind of failure.
    public var code: Code
    /// What went wrong and what to do about it, for people.
    public var message: String
    /// The error this one stands for, when there is one.
    public var cause: (any Error)?

    /// Makes an error; `message` should say what to do, not only what happened.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The code, the message and the cause, for logs.
    public var description: String {
        guard let cause else { return "\(code.rawValue): \(message)" }
        return "\(code.rawValue): \(message) (cause: \(cause))"
    }
}
