// A stand-in for swift-nio's NIOCore, just big enough for the files of ArbiterHTTP that the JSON
// harness compiles (WireJSON.swift's two ByteBuffer conveniences). Building the real NIOCore with
// its C modules under the fuzzer's instrumentation would take minutes and add nothing: the harness
// never calls those two functions. A compile error here means the JSON files use more of NIO now;
// extend the stand-in or leave the file out of run.sh.

/// The bytes of a buffer, as `ByteBuffer.readableBytesView` gives them.
public struct ByteBufferView: Sequence {
    var bytes: [UInt8]
    public func makeIterator() -> IndexingIterator<[UInt8]> { bytes.makeIterator() }
}

/// A growable byte buffer.
public struct ByteBuffer {
    var bytes: [UInt8] = []
    public var readableBytesView: ByteBufferView { ByteBufferView(bytes: bytes) }
    public mutating func writeBytes(_ new: [UInt8]) { bytes.append(contentsOf: new) }
}

/// Makes buffers.
public struct ByteBufferAllocator {
    public init() {}
    public func buffer(capacity: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.bytes.reserveCapacity(capacity)
        return buffer
    }
}
