/// The size and count limits the HTTP API enforces on what it receives.
///
/// Each has a default that `schemas/openapi.yaml` documents; services let an operator change them.
/// The transaction id's length (``TxID/lengthMax``, 128) is part of the protocol, not a setting.
public struct WireLimits: Hashable, Sendable {
    /// The largest request body accepted, in bytes, except on the batch endpoint. Default 1 MiB.
    public var bodySizeMax: Int
    /// The largest request body accepted by the batch endpoints (`POST /v1/batch`,
    /// `POST /v1/transaction-batch`), in bytes. Default 16 MiB.
    public var batchBodySizeMax: Int
    /// The most branches one transaction may have. Default 64.
    public var branchCountMax: Int
    /// The largest branch payload, in bytes of its JSON text. Default 64 KiB.
    public var payloadSizeMax: Int
    /// The most messages one batch may carry, and the most transactions one transaction batch. Default 1024.
    public var batchMessageCountMax: Int
    /// The longest participant or coordinator URL, in bytes. Default 2048.
    public var urlLengthMax: Int
    /// The longest transaction timeout a client may ask for, in milliseconds. Default 1 hour.
    public var timeoutMsMax: Int
    /// The most transactions one listing page may return. Default 1000.
    public var listLimitMax: Int
    /// The page size of a listing that gives no `limit`. Default 100.
    public var listLimitDefault: Int

    /// Makes limits; every argument defaults to the documented default.
    public init(
        bodySizeMax: Int = 1 << 20,
        batchBodySizeMax: Int = 16 << 20,
        branchCountMax: Int = 64,
        payloadSizeMax: Int = 64 << 10,
        batchMessageCountMax: Int = 1024,
        urlLengthMax: Int = 2048,
        timeoutMsMax: Int = 3_600_000,
        listLimitMax: Int = 1000,
        listLimitDefault: Int = 100
    ) {
        precondition(bodySizeMax > 0 && batchBodySizeMax > 0, "body size limits must be positive")
        precondition(branchCountMax > 0 && payloadSizeMax > 0, "branch limits must be positive")
        precondition(batchMessageCountMax > 0 && urlLengthMax > 0 && timeoutMsMax > 0, "limits must be positive")
        precondition((1...listLimitMax).contains(listLimitDefault), "listLimitDefault must be in 1...listLimitMax")
        self.bodySizeMax = bodySizeMax
        self.batchBodySizeMax = batchBodySizeMax
        self.branchCountMax = branchCountMax
        self.payloadSizeMax = payloadSizeMax
        self.batchMessageCountMax = batchMessageCountMax
        self.urlLengthMax = urlLengthMax
        self.timeoutMsMax = timeoutMsMax
        self.listLimitMax = listLimitMax
        self.listLimitDefault = listLimitDefault
    }

    /// The documented defaults.
    public static let `default` = WireLimits()
}
