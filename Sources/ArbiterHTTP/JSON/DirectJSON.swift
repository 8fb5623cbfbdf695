// The bodies every transaction sends between the coordinator and its participants, written as JSON
// directly instead of through `Encodable`.
//
// ``WireJSON/encode(_:)`` builds a tree of nodes through `Codable`'s containers (a protocol witness,
// an existential box and an allocation per field), then writes it. For the batches of prepares,
// commits and aborts, and their replies, that was 5–8 % of the coordinator's CPU and about 5 % of
// a bank node's at C=64. Writing them directly produces the same bytes (a test compares the two
// ways on values with every kind of character), so the decoder and the OpenAPI contract are
// untouched.

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
                out.append(contentsOf: #"{"type":"prepare","txid":"#.utf8)
                JSONText.writeString(body.txid, to: &out)
                out.append(contentsOf: #","coordinator":"#.utf8)
                JSONText.writeString(body.coordinator, to: &out)
                out.append(contentsOf: #","payload":"#.utf8)
                out.append(contentsOf: body.payload.bytes)
                if let onePhase = body.onePhase {
                    out.append(contentsOf: (onePhase ? #","onePhase":true"# : #","onePhase":false"#).utf8)
                }
            case .commit(let body):
                out.append(contentsOf: #"{"type":"commit","txid":"#.utf8)
                JSONText.writeString(body.txid, to: &out)
            case .abort(let body):
                out.append(contentsOf: #"{"type":"abort","txid":"#.utf8)
                JSONText.writeString(body.txid, to: &out)
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
        let start = out.count
        out.append(contentsOf: #"{"replies":["#.utf8)
        for (index, reply) in replies.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            switch reply {
            case .prepare(.vote(let txid, let vote, let reason)):
                out.append(contentsOf: #"{"type":"prepare","txid":"#.utf8)
                JSONText.writeString(txid, to: &out)
                out.append(contentsOf: #","vote":"#.utf8)
                JSONText.writeString(vote.rawValue, to: &out)
                if let reason {
                    out.append(contentsOf: #","reason":"#.utf8)
                    JSONText.writeString(reason, to: &out)
                }
            case .prepare(.outcome(let txid, let outcome)):
                out.append(contentsOf: #"{"type":"prepare","txid":"#.utf8)
                JSONText.writeString(txid, to: &out)
                out.append(contentsOf: #","outcome":"#.utf8)
                JSONText.writeString(outcome.rawValue, to: &out)
            case .commit(let acknowledgement), .abort(let acknowledgement):
                out.append(contentsOf: (reply.type == .commit ? #"{"type":"commit","txid":"# : #"{"type":"abort","txid":"#).utf8)
                JSONText.writeString(acknowledgement.txid, to: &out)
                out.append(contentsOf: #","state":"#.utf8)
                JSONText.writeString(acknowledgement.state.rawValue, to: &out)
            case .error:
                out.removeSubrange(start...)
                return false
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}".utf8)
        return true
    }
}
