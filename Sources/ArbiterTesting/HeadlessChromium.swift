public import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Debian's `chromium` (or the one `ARBITER_CHROMIUM` names), if installed.
public let chromiumPath: String? = {
    let candidates = [ProcessInfo.processInfo.environment["ARBITER_CHROMIUM"], "/usr/bin/chromium", "/usr/bin/chromium-browser"]
    return candidates.compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// A headless Chromium that a test drives as a person would use a page: it opens a URL, types
/// into fields, clicks, reads the page, and takes screenshots, over the DevTools protocol on a pair
/// of pipes (`--remote-debugging-pipe`: the browser reads commands on its descriptor 3 and writes
/// answers on 4, each a JSON text ended by a NUL byte). No WebSocket, no port.
///
/// Every call has a deadline; ``with(_:windowSize:_:)`` closes the browser (or kills it, by its pid)
/// however the body ends.
public final class HeadlessChromium: Sendable {
    /// What went wrong: the browser's error for a command, a script that threw, a deadline passed.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    private let pid: pid_t
    private let commands: Int32
    private let answers: Int32
    private let profile: TemporaryDirectory
    private let windowSize: (width: Int, height: Int)
    private let state = Mutex(State())

    private struct State {
        var nextID = 0
        var waiting: [Int: CheckedContinuation<[UInt8], any Error>] = [:]
        /// Why no more answers come (the browser closed its end).
        var ended: String?
    }

    /// Starts the browser at `path` with a fresh profile, runs `body`, then closes the browser.
    public static func with<T>(
        _ path: String, windowSize: (width: Int, height: Int) = (1280, 900), _ body: (HeadlessChromium) async throws -> T
    ) async throws -> T {
        let browser = try HeadlessChromium(path, windowSize: windowSize)
        do {
            let result = try await body(browser)
            await browser.close()
            return result
        } catch {
            await browser.close()
            throw error
        }
    }

    private init(_ path: String, windowSize: (width: Int, height: Int)) throws {
        profile = try TemporaryDirectory(prefix: "arbiter-chromium")
        self.windowSize = windowSize
        // Two pipes, moved above the descriptors the child gets (3 and 4) and closed on exec; the
        // child's copies at 3 and 4 are made by dup2, which leaves them open.
        let toBrowser = try Self.pipe()
        let fromBrowser = try Self.pipe()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, toBrowser.read, 3)
        posix_spawn_file_actions_adddup2(&actions, fromBrowser.write, 4)
        let arguments = [
            path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--remote-debugging-pipe", "--user-data-dir=\(profile.path)",
            "--window-size=\(windowSize.width),\(windowSize.height)", "about:blank",
        ]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, &argv, environ)
        Glibc.close(toBrowser.read)
        Glibc.close(fromBrowser.write)
        guard spawned == 0 else {
            Glibc.close(toBrowser.write)
            Glibc.close(fromBrowser.read)
            throw Failure("cannot start \(path): \(String(cString: strerror(spawned)))")
        }
        self.pid = pid
        commands = toBrowser.write
        answers = fromBrowser.read
        Thread.detachNewThread { [self] in readAnswers() }
    }

    /// A pipe whose two ends are at descriptor 10 or above, closed on exec.
    private static func pipe() throws -> (read: Int32, write: Int32) {
        var ends: [Int32] = [0, 0]
        guard Glibc.pipe(&ends) == 0 else { throw Failure("pipe: \(String(cString: strerror(errno)))") }
        let moved = ends.map { fcntl($0, F_DUPFD_CLOEXEC, 10) }
        ends.forEach { Glibc.close($0) }
        guard moved.allSatisfy({ $0 >= 0 }) else { throw Failure("fcntl: \(String(cString: strerror(errno)))") }
        return (moved[0], moved[1])
    }

    /// Reads the browser's messages until it closes its end, and hands each answer to its caller
    /// (events, which carry no id, are not used).
    private func readAnswers() {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(answers, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            pending.append(contentsOf: chunk[0..<count])
            while let end = pending.firstIndex(of: 0) {
                let message = Array(pending[..<end])
                pending.removeSubrange(...end)
                guard let object = try? JSONSerialization.jsonObject(with: Data(message)) as? [String: Any],
                      let id = (object["id"] as? NSNumber)?.intValue else { continue }
                state.withLock { $0.waiting.removeValue(forKey: id) }?.resume(returning: message)
            }
        }
        Glibc.close(answers)
        let waiting = state.withLock { state in
            state.ended = "the browser closed its end of the pipe"
            defer { state.waiting = [:] }
            return state.waiting
        }
        for continuation in waiting.values { continuation.resume(throwing: Failure("the browser closed its end of the pipe")) }
    }

    /// Sends a DevTools command (to the page `session`, or to the browser) and returns the JSON
    /// text of its `result`.
    ///
    /// - Throws: ``Failure`` when the browser answers with an error, closes, or has not answered
    ///   within `timeout`.
    @discardableResult
    public func call(
        _ method: String, _ parameters: [String: any Sendable] = [:], session: String? = nil, timeout: Duration = .seconds(60)
    ) async throws -> [UInt8] {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        var command: [String: Any] = ["id": id, "method": method, "params": parameters as [String: Any]]
        if let session { command["sessionId"] = session }
        let bytes = Array(try JSONSerialization.data(withJSONObject: command)) + [0]
        let deadline = Task { [self] in
            try await Task.sleep(for: timeout)
            self.state.withLock { $0.waiting.removeValue(forKey: id) }?
                .resume(throwing: Failure("the browser did not answer \(method) within \(timeout)"))
        }
        defer { deadline.cancel() }
        let answer = try await withCheckedThrowingContinuation { continuation in
            let ended = state.withLock { state -> String? in
                if state.ended == nil { state.waiting[id] = continuation }
                return state.ended
            }
            if let ended {
                continuation.resume(throwing: Failure(ended))
                return
            }
            let written = bytes.withUnsafeBytes { buffer -> Bool in
                var offset = 0
                while offset < buffer.count {
                    let count = write(commands, buffer.baseAddress! + offset, buffer.count - offset)
                    if count < 0 && errno == EINTR { continue }
                    guard count > 0 else { return false }
                    offset += count
                }
                return true
            }
            if !written {
                state.withLock { $0.waiting.removeValue(forKey: id) }?.resume(throwing: Failure("cannot write to the browser"))
            }
        }
        let object = try JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any] ?? [:]
        if let error = object["error"] as? [String: Any] {
            throw Failure("\(method): \(error["message"] as? String ?? "\(error)")")
        }
        return Array(try JSONSerialization.data(withJSONObject: object["result"] ?? [String: Any]()))
    }

    /// Opens a new tab, `windowSize` large, on `about:blank`.
    public func newPage() async throws -> BrowserPage {
        let target = try Self.object(try await call("Target.createTarget", ["url": "about:blank"]))
        guard let targetID = target["targetId"] as? String else { throw Failure("Target.createTarget answered no targetId") }
        let attached = try Self.object(try await call("Target.attachToTarget", ["targetId": targetID, "flatten": true]))
        guard let session = attached["sessionId"] as? String else { throw Failure("Target.attachToTarget answered no sessionId") }
        try await call("Emulation.setDeviceMetricsOverride",
                       ["width": windowSize.width, "height": windowSize.height, "deviceScaleFactor": 1, "mobile": false], session: session)
        return BrowserPage(browser: self, session: session)
    }

    /// Asks the browser to close, and kills it (by its pid) if it has not exited within 10 s.
    public func close() async {
        _ = try? await call("Browser.close", timeout: .seconds(10))
        let deadline = ContinuousClock.now + .seconds(10)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            guard ContinuousClock.now < deadline else {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        Glibc.close(commands)
    }

    static func object(_ json: [UInt8]) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw Failure("not a JSON object: \(String(decoding: json, as: UTF8.self))")
        }
        return object
    }
}

/// A tab of a ``HeadlessChromium``.
public struct BrowserPage: Sendable {
    let browser: HeadlessChromium
    let session: String

    /// Starts loading `url`; wait for what the page should show with ``waitUntil(_:_:timeout:)``.
    public func open(_ url: String) async throws {
        let navigated = try HeadlessChromium.object(try await browser.call("Page.navigate", ["url": url], session: session))
        if let error = navigated["errorText"] as? String { throw HeadlessChromium.Failure("cannot open \(url): \(error)") }
    }

    /// Evaluates the JavaScript `expression` in the page (awaiting it if it is a promise) and
    /// returns its value as text: a string as it is, anything else as JSON.
    ///
    /// - Throws: ``HeadlessChromium/Failure`` when the script throws.
    @discardableResult
    public func evaluate(_ expression: String) async throws -> String {
        let wrapped = "(async () => { const value = await (\(expression)); return typeof value === \"string\" ? value : JSON.stringify(value ?? null); })()"
        let answer = try HeadlessChromium.object(try await browser.call(
            "Runtime.evaluate", ["expression": wrapped, "returnByValue": true, "awaitPromise": true], session: session))
        if let exception = answer["exceptionDetails"] as? [String: Any] {
            let text = (exception["exception"] as? [String: Any])?["description"] as? String ?? exception["text"] as? String ?? "\(exception)"
            throw HeadlessChromium.Failure("the page's script threw: \(text)")
        }
        return (answer["result"] as? [String: Any])?["value"] as? String ?? ""
    }

    /// Waits until the JavaScript `condition` is true, checking every 100 ms, for at most
    /// `timeout`. A script that throws meanwhile (the page is still loading) counts as false.
    public func waitUntil(_ what: String, _ condition: String, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            do {
                if try await evaluate("Boolean(\(condition))") == "true" { return }
            } catch {
                last = " (last: \(error))"
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HeadlessChromium.Failure("timed out after \(timeout) waiting until \(what)\(last)")
    }

    /// Clicks the element `selector` finds, as a person would (a mouse press and release at its
    /// centre, scrolled into view). With `between`, a script expression is run (and awaited)
    /// after the press and before the release: what the page may do while a button is held down.
    public func click(_ selector: String, between: String? = nil) async throws {
        let box = try HeadlessChromium.object(Array(try await evaluate("""
            (() => { const e = document.querySelector(\(Self.literal(selector)));
              if (!e) throw new Error("nothing matches " + \(Self.literal(selector)));
              e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect();
              return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()
            """).utf8))
        let x = (box["x"] as? NSNumber)?.doubleValue ?? 0, y = (box["y"] as? NSNumber)?.doubleValue ?? 0
        for type in ["mousePressed", "mouseReleased"] {
            if type == "mouseReleased", let between { _ = try await evaluate(between) }
            try await browser.call("Input.dispatchMouseEvent",
                                   ["type": type, "x": x, "y": y, "button": "left", "clickCount": 1], session: session)
        }
    }

    /// Types `text` into the field `selector` finds, after what it holds (focused by a click).
    public func type(_ text: String, into selector: String) async throws {
        try await click(selector)
        try await browser.call("Input.insertText", ["text": text], session: session)
    }

    /// The text the element `selector` finds shows (empty when nothing matches).
    public func text(_ selector: String) async throws -> String {
        try await evaluate("(document.querySelector(\(Self.literal(selector))) || {innerText: \"\"}).innerText")
    }

    /// A PNG of what the page shows.
    public func screenshot() async throws -> Data {
        let shot = try HeadlessChromium.object(try await browser.call("Page.captureScreenshot", ["format": "png"], session: session))
        guard let base64 = shot["data"] as? String, let png = Data(base64Encoded: base64) else {
            throw HeadlessChromium.Failure("Page.captureScreenshot answered no image")
        }
        return png
    }

    /// `text` as a JavaScript string literal.
    static func literal(_ text: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [text])) ?? Data("[\"\"]".utf8)
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }
}
