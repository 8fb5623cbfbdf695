import Foundation
import Synchronization

/// A throwaway PostgreSQL cluster for tests, the demo and the benchmark: `initdb` in a temporary
/// directory, a server on a free loopback port (and a Unix socket in that directory only), one
/// database, trust authentication for the `postgres` user. PostgreSQL refuses to run as root, so
/// when this process is root its commands run as the `postgres` system user (`runuser`); Debian's
/// `postgresql` package provides both. ``stop()`` stops it by its process id; the directory goes
/// with the value.
public final class PostgresServer: Sendable {
    /// The PostgreSQL binaries (Debian's layout: `/usr/lib/postgresql/VERSION/bin`), newest first.
    public static let binaries: String? = {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return versions.compactMap(Int.init).sorted(by: >).map { "\(root)/\($0)/bin" }
            .first { FileManager.default.isExecutableFile(atPath: "\($0)/initdb") }
    }()

    /// Whether a cluster can be started here.
    public static var isAvailable: Bool { binaries != nil }

    /// The server's port: picked just before the first start, and kept.
    public var port: Int { portValue.withLock { $0 } }
    private let portValue = Mutex(0)
    public let database: String
    private let directory: TemporaryDirectory
    private let bin: String

    /// The cluster's data directory.
    public var dataDirectory: String { directory.path + "/data" }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    public var url: String { "postgres://postgres@127.0.0.1:\(port)/\(database)" }

    /// Creates and starts a cluster with an empty database `database`.
    public init(database: String = "arbiter", settings: [String: String] = [:]) async throws {
        guard let bin = Self.binaries else { throw HarnessError("PostgreSQL is not installed (Debian: apt-get install postgresql)") }
        self.bin = bin
        self.database = database
        directory = try TemporaryDirectory(prefix: "arbiter-pg")
        try Self.giveToPostgres(directory.path)
        try await run("\(bin)/initdb", ["-D", dataDirectory, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
        var configuration = [
            "listen_addresses": "'127.0.0.1'", "unix_socket_directories": "'\(directory.path)'",
            "max_connections": "100", "max_prepared_transactions": "100",
        ]
        configuration.merge(settings) { $1 }
        let lines = configuration.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: "\n")
        try appendConfiguration("\n# Arbiter's test cluster\n\(lines)\n")
        try await startOnFreePort()
        try await run("\(bin)/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", "postgres",
                                      "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE \(database)"])
    }

    deinit { stopNow() }

    /// The first start, on a port that was free a moment ago. Another test may bind it first (the
    /// port is only picked, not held): then the server cannot listen, and another port is tried.
    private func startOnFreePort() async throws {
        for attempt in 1...5 {
            let port = try freeLoopbackPort()
            portValue.withLock { $0 = port }
            // The last setting in the file wins.
            try appendConfiguration("port = \(port)\n")
            let logged = log.utf8.count
            do {
                try await start()
                return
            } catch where attempt < 5 && String(decoding: log.utf8.dropFirst(logged), as: UTF8.self).contains("could not bind") {
                continue
            }
        }
    }

    private func appendConfiguration(_ text: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: dataDirectory + "/postgresql.conf"))
        handle.seekToEndOfFile()
        handle.write(Data(text.utf8))
        try handle.close()
    }

    /// Starts the server (again, after ``stop()``), waiting until it accepts connections.
    public func start() async throws {
        try await run("\(bin)/pg_ctl", ["-D", dataDirectory, "-l", directory.path + "/server.log", "-w", "-t", "120", "start"])
    }

    /// Stops the server by its process id (fast shutdown: sessions are cut, nothing committed is
    /// lost) and waits until it is gone.
    public func stop() async throws {
        guard let pid = postmasterPID else { return }
        kill(pid, SIGINT)
        let deadline = ContinuousClock.now + .seconds(60)
        while kill(pid, 0) == 0 {
            guard ContinuousClock.now < deadline else { throw HarnessError("PostgreSQL (pid \(pid)) did not stop within 60 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops the server as a crash would (immediate shutdown: no checkpoint; the next start
    /// replays the WAL) and waits until it is gone.
    public func crash() async throws {
        guard let pid = postmasterPID else { return }
        kill(pid, SIGQUIT)
        let deadline = ContinuousClock.now + .seconds(60)
        while kill(pid, 0) == 0 {
            guard ContinuousClock.now < deadline else { throw HarnessError("PostgreSQL (pid \(pid)) did not stop within 60 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Runs `sql` in the database with `psql` and returns its unaligned output.
    @discardableResult
    public func psql(_ sql: String) async throws -> String {
        try await run("\(bin)/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", database,
                                      "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
    }

    /// The server's log so far.
    public var log: String { (try? String(contentsOfFile: directory.path + "/server.log", encoding: .utf8)) ?? "" }

    private var postmasterPID: pid_t? {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
              let first = text.split(separator: "\n").first else { return nil }
        return pid_t(first)
    }

    private func stopNow() {
        guard let pid = postmasterPID else { return }
        kill(pid, SIGQUIT)  // Immediate shutdown: the directory is removed next.
        for _ in 0..<500 where kill(pid, 0) == 0 { usleep(10_000) }
    }

    private static var isRoot: Bool { geteuid() == 0 }

    /// The cluster's directory must belong to the user the server runs as.
    private static func giveToPostgres(_ path: String) throws {
        guard isRoot else { return }
        guard let user = getpwnam("postgres") else { throw HarnessError("no `postgres` system user to run PostgreSQL as") }
        guard chown(path, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
            throw HarnessError("cannot give \(path) to the postgres user (errno \(errno))")
        }
    }

    /// Runs a PostgreSQL command (as `postgres` when this process is root) and returns its output;
    /// throws with its output when it fails. The output goes through a file, not a pipe: the server
    /// that `pg_ctl start` leaves running would otherwise hold the pipe open.
    @discardableResult
    private func run(_ executable: String, _ arguments: [String]) async throws -> String {
        let (path, args) = Self.isRoot ? ("/usr/sbin/runuser", ["-u", "postgres", "--", executable] + arguments) : (executable, arguments)
        let outputPath = directory.path + "/command-\(UUID().uuidString).out"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil) else { throw HarnessError("cannot create \(outputPath)") }
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        // posix_spawn and waitpid rather than Foundation's Process, which on Linux does not see the
        // end of a child whose grandchild (the server) lives on.
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        var spawned: Int32 = 0
        // Another thread may close a descriptor between the listing and the spawn: try again.
        for _ in 0..<5 {
            spawned = Self.spawn(&pid, path, argv, output: outputPath)
            if spawned == 0 { break }
        }
        guard spawned == 0 else { throw HarnessError("cannot run \(path) (error \(spawned))") }
        var status: Int32 = 0
        let deadline = ContinuousClock.now + .seconds(180)
        while waitpid(pid, &status, WNOHANG) == 0 {
            guard ContinuousClock.now < deadline else {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw HarnessError("\(executable) did not finish within 180 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard exitCode == 0 else {
            throw HarnessError("\(executable) \(arguments.joined(separator: " ")) failed (\(exitCode)): \(text)\n\(log)")
        }
        return text
    }
}

extension PostgresServer {
    /// Starts `path` with standard input from /dev/null, standard output and error to `output`,
    /// and none of this process's other descriptors (a test process has many open: PostgreSQL,
    /// inheriting them, would find too few left under the limit and refuse to start).
    fileprivate static func spawn(_ pid: inout pid_t, _ path: String, _ argv: [UnsafeMutablePointer<CChar>?], output: String) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_APPEND, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            guard let fd = Int32(entry), fd > 2, fcntl(fd, F_GETFD) != -1 else { continue }
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        return posix_spawn(&pid, path, &actions, nil, argv, environ)
    }
}
