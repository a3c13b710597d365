import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The seam every durable file operation goes through: positioned writes,
/// `fsync`/`fdatasync` (files and directories), `rename`, `unlink` and
/// `ftruncate`. Each operation is numbered (process-wide, from 1), so a
/// reliability test can count them, kill the process at one of them, or
/// make one fail, without touching the code that issues them.
///
/// Fault injection is off unless the process starts with one of these
/// environment variables (read once):
/// - `LODESTONE_IO_KILL_AT=N`: SIGKILL the process just before operation N;
///   with `LODESTONE_IO_KILL_MODE=torn`, a write at N first writes half its
///   bytes (a torn write), then the process dies.
/// - `LODESTONE_IO_FAIL_AT=N`: operation N fails with `LODESTONE_IO_FAIL_ERRNO`
///   (default ENOSPC), as a full disk would.
/// - `LODESTONE_IO_COUNT=1`: print `io-ops N` to stderr when the process exits.
public enum StorageIO {
    /// The kinds of operation the seam numbers.
    public enum Operation: String, Sendable {
        case write, fsync, fdatasync, fsyncDirectory = "fsync-directory", rename, unlink, truncate
    }

    private struct Plan {
        var killAt = 0
        var tornKill = false
        var failAt = 0
        var failErrno = ENOSPC
        var count = false
    }

    private static let plan: Plan = {
        var p = Plan()
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        p.killAt = env("LODESTONE_IO_KILL_AT").flatMap { Int($0) } ?? 0
        p.tornKill = env("LODESTONE_IO_KILL_MODE") == "torn"
        p.failAt = env("LODESTONE_IO_FAIL_AT").flatMap { Int($0) } ?? 0
        p.failErrno = env("LODESTONE_IO_FAIL_ERRNO").flatMap { Int32($0) } ?? ENOSPC
        p.count = env("LODESTONE_IO_COUNT") != nil
        if p.count { atexit { StorageIO.reportCount() } }
        return p
    }()

    private static let counter = Atomic<Int>(0)

    /// Operations performed so far in this process.
    public static var operationCount: Int { counter.load(ordering: .relaxed) }

    private static func reportCount() {
        let line = "io-ops \(counter.load(ordering: .relaxed))\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    /// Numbers the next operation and applies the fault plan: returns an
    /// errno to fail it with, `-1` for a torn write, or 0 to go ahead.
    @inline(__always)
    private static func next(_ op: Operation) -> Int32 {
        let p = plan
        let n = counter.add(1, ordering: .relaxed).newValue
        if p.killAt == 0 && p.failAt == 0 { return 0 }
        if n == p.failAt { return p.failErrno }
        if n == p.killAt {
            let line = "io-kill \(n) \(op.rawValue)\n"
            _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
            if p.tornKill && op == .write { return -1 }
            kill(getpid(), SIGKILL)
        }
        return 0
    }

    private static func dieAfterTornWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: off_t) -> Never {
        _ = Glibc.pwrite(fd, buffer, count / 2, offset)
        kill(getpid(), SIGKILL)
        while true { pause() }
    }

    /// `pwrite(2)`.
    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: off_t) -> Int {
        switch next(.write) {
        case 0: return Glibc.pwrite(fd, buffer, count, offset)
        case -1: dieAfterTornWrite(fd, buffer, count, offset)
        case let e:
            errno = e
            return -1
        }
    }

    /// `fsync(2)`.
    static func fsync(_ fd: Int32) -> Int32 { fail(.fsync) ?? Glibc.fsync(fd) }

    /// `fdatasync(2)`.
    static func fdatasync(_ fd: Int32) -> Int32 { fail(.fdatasync) ?? Glibc.fdatasync(fd) }

    /// `fsync(2)` of a directory (after a rename or create in it).
    static func fsyncDirectory(_ fd: Int32) -> Int32 { fail(.fsyncDirectory) ?? Glibc.fsync(fd) }

    /// `rename(2)`.
    static func rename(_ from: String, _ to: String) -> Int32 { fail(.rename) ?? Glibc.rename(from, to) }

    /// `unlink(2)`.
    @discardableResult
    static func unlink(_ path: String) -> Int32 { fail(.unlink) ?? Glibc.unlink(path) }

    /// `ftruncate(2)`.
    static func ftruncate(_ fd: Int32, _ length: off_t) -> Int32 { fail(.truncate) ?? Glibc.ftruncate(fd, length) }

    private static func fail(_ op: Operation) -> Int32? {
        let e = next(op)
        guard e > 0 else { return nil }
        errno = e
        return -1
    }
}
