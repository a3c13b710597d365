import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The seam every durable file operation goes through (over
/// ``SystemCalls``): positioned writes,
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
///   (default ENOSPC), as a full disk would (and `io-fail N op` goes to stderr).
/// - `LODESTONE_IO_COUNT=1`: print `io-ops N` to stderr when the process exits.
/// - `LODESTONE_IO_SYNC_DELAY_MS=N`: every `fdatasync` of a log first sleeps
///   N ms, as on a slow disk (``delaySyncs(microseconds:under:)`` sets it
///   from a test, for one directory).
@_spi(LodestoneTools) public enum StorageIO {
    /// The kinds of operation the seam numbers.
    @_spi(LodestoneTools) public enum Operation: String, Sendable {
        case write, fsync, fdatasync, fsyncDirectory = "fsync-directory", rename, unlink, truncate
        /// Not numbered: creating a file or a directory (journaled only).
        case create, mkdir
        /// A mark the caller puts in the journal (an acknowledgement).
        case mark
    }

    /// One journaled operation (see ``startJournal()``).
    @_spi(LodestoneTools) public struct JournalEntry: Sendable {
        @_spi(LodestoneTools) public var operation: Operation
        /// The file or directory (the source of a rename).
        @_spi(LodestoneTools) public var path: String
        /// The destination of a rename, or the text of a mark.
        @_spi(LodestoneTools) public var other: String = ""
        @_spi(LodestoneTools) public var offset: Int = 0
        /// A write's bytes, or a truncation's new length in `offset`.
        @_spi(LodestoneTools) public var bytes: [UInt8] = []
    }

    private static let journaling = Atomic<Bool>(false)
    private static let journal = Locked<(entries: [JournalEntry], paths: [Int32: String])>(([], [:]))

    /// Starts recording every operation with its data, in order (for the
    /// power-cut simulator, which replays them onto a simulated disk).
    @_spi(LodestoneTools) public static func startJournal() {
        journal.withLock { $0 = ([], [:]) }
        journaling.store(true, ordering: .sequentiallyConsistent)
    }

    /// Stops recording and returns the journal.
    @_spi(LodestoneTools) public static func stopJournal() -> [JournalEntry] {
        journaling.store(false, ordering: .sequentiallyConsistent)
        return journal.withLock { $0.entries }
    }

    /// Adds a mark to the journal (no-op when not journaling).
    @_spi(LodestoneTools) public static func mark(_ text: String) {
        record(JournalEntry(operation: .mark, path: "", other: text))
    }

    @inline(__always)
    private static func record(_ entry: @autoclosure () -> JournalEntry) {
        guard journaling.load(ordering: .relaxed) else { return }
        let e = entry()
        journal.withLock { $0.entries.append(e) }
    }

    private static func path(of fd: Int32) -> String { journal.withLock { $0.paths[fd] ?? "?fd\(fd)" } }

    /// `open(2)`, remembering the descriptor's path while journaling.
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        let existed = journaling.load(ordering: .relaxed) && SystemCalls.exists(path)
        let fd = SystemCalls.open(path, flags, mode)
        guard fd >= 0, journaling.load(ordering: .relaxed) else { return fd }
        journal.withLock { $0.paths[fd] = path }
        if flags & O_CREAT != 0 && !existed { record(JournalEntry(operation: .create, path: path)) }
        if flags & O_TRUNC != 0 { record(JournalEntry(operation: .truncate, path: path, offset: 0)) }
        return fd
    }

    /// `mkdir(2)`.
    static func mkdir(_ path: String, _ mode: mode_t) -> Int32 {
        let r = SystemCalls.mkdir(path, mode)
        if r == 0 { record(JournalEntry(operation: .mkdir, path: path)) }
        return r
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
        if let ms = env("LODESTONE_IO_SYNC_DELAY_MS").flatMap({ Int($0) }), ms > 0 {
            delaySyncs(microseconds: ms * 1_000)
        }
        if p.count { atexit { StorageIO.reportCount() } }
        return p
    }()

    private static let counter = Atomic<Int>(0)
    private static let syncsDelayed = Atomic<Bool>(false)
    private static let syncDelay = Locked<(prefix: String, microseconds: Int)>(("", 0))

    /// Delays every later `fdatasync` of a log under `prefix` (every log:
    /// "") by `microseconds` (0: no delay), as a slow disk would: for tests
    /// that hold a write in its sync.
    @_spi(LodestoneTools) public static func delaySyncs(microseconds: Int, under prefix: String = "") {
        syncDelay.withLock { $0 = (prefix, microseconds) }
        syncsDelayed.store(microseconds > 0, ordering: .releasing)
    }

    /// Operations performed so far in this process.
    @_spi(LodestoneTools) public static var operationCount: Int { counter.load(ordering: .relaxed) }

    private static func reportCount() {
        let line = "io-ops \(counter.load(ordering: .relaxed))\n"
        _ = line.withCString { SystemCalls.write(2, $0, strlen($0)) }
    }

    /// Numbers the next operation and applies the fault plan: returns an
    /// errno to fail it with, `-1` for a torn write, or 0 to go ahead.
    @inline(__always)
    private static func next(_ op: Operation) -> Int32 {
        let p = plan
        let n = counter.add(1, ordering: .relaxed).newValue
        if p.killAt == 0 && p.failAt == 0 { return 0 }
        if n == p.failAt {
            let line = "io-fail \(n) \(op.rawValue)\n"
            _ = line.withCString { SystemCalls.write(2, $0, strlen($0)) }
            return p.failErrno
        }
        if n == p.killAt {
            let line = "io-kill \(n) \(op.rawValue)\n"
            _ = line.withCString { SystemCalls.write(2, $0, strlen($0)) }
            if p.tornKill && op == .write { return -1 }
            _ = SystemCalls.kill(SystemCalls.processID, SIGKILL)
        }
        return 0
    }

    private static func dieAfterTornWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: off_t) -> Never {
        _ = SystemCalls.pwrite(fd, buffer, count / 2, offset)
        _ = SystemCalls.kill(SystemCalls.processID, SIGKILL)
        while true { SystemCalls.sleep(microseconds: 1_000_000) }
    }

    /// `pwrite(2)`.
    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: off_t) -> Int {
        switch next(.write) {
        case 0:
            let n = SystemCalls.pwrite(fd, buffer, count, offset)
            if n > 0 {
                record(JournalEntry(operation: .write, path: path(of: fd), offset: Int(offset),
                                    bytes: Array(UnsafeRawBufferPointer(start: buffer, count: n))))
            }
            return n
        case -1: dieAfterTornWrite(fd, buffer, count, offset)
        case let e:
            errno = e
            return -1
        }
    }

    /// `fsync(2)`.
    static func fsync(_ fd: Int32) -> Int32 {
        done(fail(.fsync) ?? SystemCalls.fsync(fd), JournalEntry(operation: .fsync, path: path(of: fd)))
    }

    /// `fdatasync(2)`.
    /// `path` names the file, for a sync delay (``delaySyncs(microseconds:under:)``).
    static func fdatasync(_ fd: Int32, path file: String = "") -> Int32 {
        _ = plan  // reads LODESTONE_IO_SYNC_DELAY_MS on first use
        if syncsDelayed.load(ordering: .acquiring) {
            let (prefix, delay) = syncDelay.withLock { $0 }
            if delay > 0 && file.hasPrefix(prefix) { SystemCalls.sleep(microseconds: UInt32(clamping: delay)) }
        }
        return done(fail(.fdatasync) ?? SystemCalls.fdatasync(fd), JournalEntry(operation: .fdatasync, path: path(of: fd)))
    }

    /// `fsync(2)` of a directory (after a rename or create in it).
    static func fsyncDirectory(_ fd: Int32) -> Int32 {
        done(fail(.fsyncDirectory) ?? SystemCalls.fsync(fd), JournalEntry(operation: .fsyncDirectory, path: path(of: fd)))
    }

    /// `rename(2)`.
    static func rename(_ from: String, _ to: String) -> Int32 {
        done(fail(.rename) ?? SystemCalls.rename(from, to), JournalEntry(operation: .rename, path: from, other: to))
    }

    /// `unlink(2)`.
    @discardableResult
    static func unlink(_ path: String) -> Int32 {
        done(fail(.unlink) ?? SystemCalls.unlink(path), JournalEntry(operation: .unlink, path: path))
    }

    /// `ftruncate(2)`.
    static func ftruncate(_ fd: Int32, _ length: off_t) -> Int32 {
        done(fail(.truncate) ?? SystemCalls.ftruncate(fd, length),
             JournalEntry(operation: .truncate, path: path(of: fd), offset: Int(length)))
    }

    /// The size of the file at `path` (`stat(2)`), or nil if it cannot be
    /// read; not numbered (it changes nothing).
    @_spi(LodestoneTools) public static func fileSize(_ path: String) -> Int? {
        SystemCalls.status(path).map { Int($0.st_size) }
    }

    @inline(__always)
    private static func done(_ result: Int32, _ entry: @autoclosure () -> JournalEntry) -> Int32 {
        if result == 0 { record(entry()) }
        return result
    }

    private static func fail(_ op: Operation) -> Int32? {
        let e = next(op)
        guard e > 0 else { return nil }
        errno = e
        return -1
    }
}
