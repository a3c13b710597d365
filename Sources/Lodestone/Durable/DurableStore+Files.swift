import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The store's files: the directory lock (one writing process, or shared
/// readers), its directories, and leftovers of interrupted persists.
extension DurableStore {
    /// Takes the directory's lock (exclusive to write, `shared` to read),
    /// or throws ``LodestoneError/directoryLocked(path:inThisProcess:)`` if
    /// another handle holds it in a way that excludes this one (this
    /// process's, or another's).
    static func lockDirectory(_ directory: String, shared: Bool = false) throws(LodestoneError) -> Int32 {
        let path = directory + "/LOCK"
        // A reader needs no write access: it opens the LOCK read-only and,
        // where there is none (a snapshot), holds nothing rather than make one.
        let flags = shared ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CREAT | O_CLOEXEC
        let fd = SystemCalls.open(path, flags, 0o644)
        if fd < 0 && shared && errno == ENOENT && SystemCalls.exists(directory) { return -1 }
        guard fd >= 0 else {
            if errno == ENOENT { throw .invalidArgument(name: "directory", reason: "\(directory) does not exist") }
            throw .io(path: path, operation: "open", errno: errno)
        }
        // A child process this one is spawning (on another thread) holds a
        // copy of every descriptor until its exec closes them, lock
        // included: a lock that is only that is gone within milliseconds,
        // so a refusal is retried briefly before it is believed.
        var locked = SystemCalls.tryLock(fd, exclusive: !shared)
        var e = errno
        for _ in 0..<25 where !locked && e == EWOULDBLOCK {
            SystemCalls.sleep(microseconds: 2_000)
            locked = SystemCalls.tryLock(fd, exclusive: !shared)
            e = errno
        }
        guard locked else {
            SystemCalls.close(fd)
            if e == EWOULDBLOCK {
                // flock locks belong to open file descriptions, so a second
                // open in this process is refused like another process's:
                // tell the two apart by the locks this process holds.
                let mine = lockIdentity(fd: nil, path: path).map { id in heldLocks.withLock { $0[id] != nil } } ?? false
                throw .directoryLocked(path: directory, inThisProcess: mine)
            }
            throw .io(path: path, operation: "flock", errno: e)
        }
        if let id = lockIdentity(fd: fd, path: path) { heldLocks.withLock { $0[id, default: 0] += 1 } }
        return fd
    }

    /// A lock file's device and inode: the same file however the directory
    /// was named (relative, through a symlink).
    struct LockIdentity: Hashable {
        var device: UInt64 = 0
        var inode: UInt64 = 0
    }

    static func lockIdentity(fd: Int32?, path: String) -> LockIdentity? {
        guard let st = fd.map({ SystemCalls.status($0) }) ?? SystemCalls.status(path) else { return nil }
        return LockIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The lock files this process holds (a count per file, for safety).
    static let heldLocks = Locked<[LockIdentity: Int]>([:])

    /// Releases a lock taken by ``lockDirectory(_:)``.
    static func unlockDirectory(_ fd: Int32) {
        guard fd >= 0 else { return }  // a reader of a directory without a LOCK held none
        if let id = lockIdentity(fd: fd, path: "") {
            heldLocks.withLock { held in
                if let n = held[id] { held[id] = n > 1 ? n - 1 : nil }
            }
        }
        SystemCalls.close(fd)
    }

    static func makeDirectory(_ path: String) throws(LodestoneError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if StorageIO.mkdir(current, 0o755) == 0 {
                // A new directory's entry is durable once its parent is synced.
                try SegmentWriter.syncDirectory(of: current)
            } else if errno != EEXIST {
                throw .io(path: current, operation: "mkdir", errno: errno)
            }
        }
    }

    /// Deletes segments, logs and temporary files the manifest does not name
    /// (left by a crash between writing them and switching the manifest).
    static func removeLeftovers(in directory: String, keeping: Set<String>) {
        for name in directoryEntries(directory) {
            let ours = name.hasPrefix("segment-") || name.hasPrefix("delta-") || name.hasPrefix("wal-") || name.contains(".tmp")
            if ours && !keeping.contains(name) { StorageIO.unlink(directory + "/" + name) }
        }
    }

    /// The names in `directory` (without `.` and `..`).
    static func directoryEntries(_ directory: String) -> [String] {
        SystemCalls.directoryEntries(directory) ?? []
    }
}
