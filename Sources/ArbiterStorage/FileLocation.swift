import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks on the database's place in the file system, made before SQLite sees the path so that the
/// common mistakes get a message that names the fix instead of SQLite's "unable to open database".
enum FileLocation {
    /// Throws unless `path` names a file (existing or not) in an existing, writable directory.
    static func check(_ path: String) throws(StorageError) {
        guard !path.isEmpty else {
            throw StorageError(.invalidArgument, "the database path is empty; give a file path such as /var/lib/arbiter/coordinator.sqlite")
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StorageError(.cannotOpen, "the directory \(directory) does not exist; create it (mkdir -p \(directory)) or choose another path for \(path)")
        }
        let fileExists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if fileExists && isDirectory.boolValue {
            throw StorageError(.cannotOpen, "\(path) is a directory; give the path of a database file, such as \(path)/arbiter.sqlite")
        }
        // A probe file rather than access(2): root passes access(2) everywhere, yet cannot create
        // files in /proc or on a read-only mount, and SQLite must create the -wal and -shm files.
        let probe = "\(directory)/.arbiter-write-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(probe, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard descriptor >= 0 else {
            throw StorageError(.notWritable,
                "the directory \(directory) is not writable by this process (\(errnoText())); SQLite creates \(path)-wal and \(path)-shm beside the database, so fix its permissions or choose another directory")
        }
        _ = close(descriptor)
        _ = unlink(probe)
        if fileExists && access(path, R_OK | W_OK) != 0 {
            throw StorageError(.notWritable, "\(path) is not readable and writable by this process (\(errnoText())); fix its permissions")
        }
    }

    /// Flushes the file's data to the disk (fdatasync), whichever process or connection wrote it.
    static func syncData(atPath path: String) throws(StorageError) {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw StorageError(.ioError, "cannot open \(path) to flush it to disk (\(errnoText())); the write is not durable, retry it")
        }
        defer { _ = close(descriptor) }
        #if os(Linux)
        let status = fdatasync(descriptor)
        #else
        let status = fsync(descriptor)
        #endif
        guard status == 0 else {
            throw StorageError(.ioError, "flushing \(path) to disk failed (\(errnoText())); check the disk, then restart")
        }
    }

    private static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}
