// The bodies every transaction sends between the coordinator and its participants, written as JSON
// directly instead of through `Encodable`.
//
// ``WireJSON/encode(_:)`` builds a tree of nodes through `Codable`'s containers (a protocol witness,
// an existential box and an allocation per field), then writes it. The batches of prepares,
// commits and aborts, and their replies, are written for every transaction, so under load that
// cost showed in the coordinator's and the participants' profiles. Writing them directly produces
// the same bytes (a test compares the two ways on values with every kind of character), so the
// decoder and the OpenAPI contract are untouched.

/// A wire body that can write its own compact JSON, byte for byte what its `Encodable`
/// conformance writes through ``WireJSON``.
protocol DirectJSONWritable {
    /// Appends the JSON of `self` to `out` and returns true, or returns false, leaving `out` as it
    /// was, when this value is left to the general encoder.
    func writeJSON(to out: inout [UInt8]) -> Bool
}

extension BatchRequest: DirectJSONWritable {
    func writeJSON(to out: inout [UInt8]) -> Bool {
        out.append(contentsOf: #"{"messages":["#.utf8)
        for (index, message) in messages.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            switch message {
            case .prepare(let body):
                writeHead(type: message.type.rawValue, txid: body.txid, to: &out)
                out.append(contentsOf: #","coordinator":"#.utf8)
                JSONText.writeString(body.coordinator, to: &out)
                out.append(contentsOf: #","payload":"#.utf8)
                out.append(contentsOf: body.payload.bytes)
                if let onePhase = body.onePhase {
                    out.append(contentsOf: (onePhase ? #","onePhase":true"# : #","onePhase":false"#).utf8)
                }
            case .commit(let body), .abort(let body):
                writeHead(type: message.type.rawValue, txid: body.txid, to: &out)
            }
            if let traceparent = message.traceparent {
                out.append(contentsOf: #","traceparent":"#.utf8)
                JSONText.writeString(traceparent, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}".utf8)
        return true
    }
}

extension BatchResponse: DirectJSONWritable {
    /// Writes the replies of the protocol; a response with an error reply (rare) is left to the
    /// general encoder.
    func writeJSON(to out: inout [UInt8]) -> Bool {
        guard !replies.contains(where: { $0.type == .error }) else { return false }
        out.append(contentsOf: #"{"replies":["#.utf8)
        for (index, reply) in replies.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            writeHead(type: reply.type.rawValue, txid: reply.txid, to: &out)
            switch reply {
            case .prepare(.vote(_, let vote, let reason)):
                out.append(contentsOf: #","vote":"#.utf8)
                JSONText.writeString(vote.rawValue, to: &out)
                if let reason {
                    out.append(contentsOf: #","reason":"#.utf8)
                    JSONText.writeString(reason, to: &out)
                }
            case .prepare(.outcome(_, let outcome)):
                out.append(contentsOf: #","outcome":"#.utf8)
                JSONText.writeString(outcome.rawValue, to: &out)
            case .commit(let acknowledgement), .abort(let acknowledgement):
                out.append(contentsOf: #","state":"#.utf8)
                JSONText.writeString(acknowledgement.state.rawValue, to: &out)
            case .error:
                break  // Left to the general encoder above.
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}".utf8)
        return true
    }
}

/// `{"type":TYPE,"txid":TXID`: how every batch message and reply begins (the general encoder
/// writes `type` first, then the body's fields in their declared order, `txid` first).
private func writeHead(type: String, txid: String, to out: inout [UInt8]) {
    out.append(contentsOf: #"{"type":"#.utf8)
    JSONText.writeString(type, to: &out)
    out.append(contentsOf: #","txid":"#.utf8)
    JSONText.writeString(txid, to: &out)
}
