#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain TCP connection to `127.0.0.1:PORT` made with the socket calls themselves, for tests
/// that play a misbehaving client: one that connects and says nothing, sends half a request, or
/// trickles bytes. Closed when it goes away.
public final class RawConnection {
    public let descriptor: Int32

    /// Connects (blocking; loopback answers at once).
    public init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw HarnessError("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else {
            let error = errno
            close(descriptor)
            throw HarnessError("connect() to 127.0.0.1:\(port) failed: errno \(error)")
        }
    }

    deinit { close(descriptor) }

    /// Sends `text`; false when the peer has closed the connection.
    @discardableResult
    public func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        #if canImport(Glibc)
        return bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
        #else
        return bytes.withUnsafeBytes { Darwin.send(descriptor, $0.baseAddress, $0.count, 0) } == bytes.count
        #endif
    }

    /// Whether the peer has closed the connection (end of file or reset), without waiting.
    public var isClosedByPeer: Bool { waitUntilClosed(milliseconds: 0) }

    /// Waits at most `milliseconds` for the peer to close the connection; true when it did.
    /// Bytes the peer sent meanwhile (an answer) are read and dropped.
    public func waitUntilClosed(milliseconds: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var remaining = milliseconds
        while true {
            var descriptorPoll = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let started = ContinuousClock.now
            let ready = poll(&descriptorPoll, 1, Int32(max(0, remaining)))
            if ready > 0 {
                let count = recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if count == 0 { return true }
                if count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { return true }
            } else if ready == 0 {
                return false
            }
            let elapsed = ContinuousClock.now - started
            remaining -= Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
            if remaining <= 0 { return isReadableEnd() }
        }
    }

    /// Like ``waitUntilClosed(milliseconds:)``, for async tests: it polls in short slices and
    /// sleeps between them, so that it never holds one of Swift's few cooperative threads that the
    /// server under test may need to close the connection.
    public func closed(within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if waitUntilClosed(milliseconds: 1) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return waitUntilClosed(milliseconds: 0)
    }

    private func isReadableEnd() -> Bool {
        var byte: UInt8 = 0
        let count = recv(descriptor, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
        return count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }
}
