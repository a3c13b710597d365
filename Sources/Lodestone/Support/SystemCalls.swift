import CLodestoneKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The one file that calls the operating system (as swift-nio keeps its system
// calls in one file). Other files call `SystemCalls`, or ``StorageIO`` for
// what must survive a crash (it numbers, journals and can fail those calls,
// on top of these). ArchitectureTests keeps it so. Results and `errno` are
// the C library's, unchanged: callers turn them into ``LodestoneError``s.

/// Thin wrappers over the system calls Lodestone makes.
enum SystemCalls {
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 { c_open(path, flags, mode) }
    @discardableResult
    static func close(_ fd: Int32) -> Int32 { c_close(fd) }
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { c_read(fd, buffer, count) }
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: off_t) -> Int {
        c_pread(fd, buffer, count, offset)
    }
    static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { c_write(fd, buffer, count) }
    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: off_t) -> Int {
        c_pwrite(fd, buffer, count, offset)
    }
    static func fsync(_ fd: Int32) -> Int32 { c_fsync(fd) }
    /// `fdatasync(2)`; Darwin has none exported, so `fsync` there.
    static func fdatasync(_ fd: Int32) -> Int32 { c_fdatasync(fd) }
    static func ftruncate(_ fd: Int32, _ length: off_t) -> Int32 { c_ftruncate(fd, length) }
    static func rename(_ from: String, _ to: String) -> Int32 { c_rename(from, to) }
    static func unlink(_ path: String) -> Int32 { c_unlink(path) }
    static func mkdir(_ path: String, _ mode: mode_t) -> Int32 { c_mkdir(path, mode) }
    static func rmdir(_ path: String) -> Int32 { c_rmdir(path) }
    /// `link(2)`: a hard link `to` naming the file at `from`.
    static func link(_ from: String, _ to: String) -> Int32 { c_link(from, to) }

    /// Whether `path` exists (`access(F_OK)`).
    static func exists(_ path: String) -> Bool { c_access(path, F_OK) == 0 }
    /// Whether this process may read `path` (`access(R_OK)`).
    static func isReadable(_ path: String) -> Bool { c_access(path, R_OK) == 0 }

    /// `fstat(2)`: nil on failure (errno set).
    static func status(_ fd: Int32) -> stat? {
        var st = stat()
        return c_fstat(fd, &st) == 0 ? st : nil
    }

    /// `stat(2)`: nil on failure (errno set).
    static func status(_ path: String) -> stat? {
        var st = stat()
        return c_stat(path, &st) == 0 ? st : nil
    }

    /// The names in a directory (without `.` and `..`), nil when it cannot
    /// be opened.
    static func directoryEntries(_ path: String) -> [String]? {
        guard let dir = c_opendir(path) else { return nil }
        defer { c_closedir(dir) }
        var names: [String] = []
        while let entry = c_readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `flock(2)`: an exclusive or shared lock, failing at once when held
    /// (`LOCK_NB`).
    static func tryLock(_ fd: Int32, exclusive: Bool) -> Bool {
        c_flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0
    }

    /// Maps `size` bytes of `fd` copy-on-write (readable and writable, never
    /// written back): nil on failure (errno set).
    static func mapPrivate(_ fd: Int32, size: Int) -> UnsafeMutableRawPointer? {
        guard let p = c_mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        return p
    }

    static func unmap(_ pointer: UnsafeMutableRawPointer, size: Int) { _ = c_munmap(pointer, size) }

    /// Bytes of a transparent huge page.
    static let hugePageSize = 2 << 20

    /// `bytes` of memory (free it with `free`), `alignment`-aligned; from
    /// two huge pages up, huge-page aligned and advised for huge pages,
    /// since what is read at random over megabytes then misses the TLB far
    /// less. Out of memory is fatal, naming `what`.
    static func allocate(bytes: Int, alignment: Int, what: String) -> UnsafeMutableRawPointer {
        let huge = bytes >= 2 * hugePageSize
        var p: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&p, huge ? hugePageSize : alignment, bytes) == 0, let p else {
            fatalError("Lodestone: out of memory allocating \(bytes) bytes of \(what)")
        }
        if huge { adviseHugePages(p, size: bytes) }
        return p
    }

    /// Asks for transparent huge pages (Linux; a hint, ignored elsewhere).
    static func adviseHugePages(_ pointer: UnsafeMutableRawPointer, size: Int) {
        #if os(Linux)
        _ = c_madvise(pointer, size, 14 /* MADV_HUGEPAGE, absent from Glibc's Swift module */)
        #endif
    }

    /// Tells the kernel `size` bytes from `pointer` (a file mapping) are
    /// read at random: a fault reads its page, not a read-ahead window.
    /// Huge pages are turned off there too: in a huge-page range Linux reads
    /// 2 MB around a file fault whatever the other advice.
    static func adviseRandom(_ pointer: UnsafeMutableRawPointer, size: Int) {
        #if os(Linux)
        _ = c_madvise(pointer, size, 15 /* MADV_NOHUGEPAGE, absent from Glibc's Swift module */)
        #endif
        _ = c_madvise(pointer, size, 1 /* MADV_RANDOM */)
    }

    /// Asks the kernel to start reading the pages holding `size` bytes from
    /// `pointer` (a file mapping) now, without waiting (a hint).
    static func adviseWillNeed(_ pointer: UnsafeMutableRawPointer, size: Int) {
        let page = UInt(pageSize)
        let start = UInt(bitPattern: pointer) & ~(page - 1)
        let end = UInt(bitPattern: pointer) + UInt(size)
        _ = c_madvise(UnsafeMutableRawPointer(bitPattern: start)!, Int(end - start), 3 /* MADV_WILLNEED */)
    }

    /// An unnamed scratch file in `directory`, read and write: it has no
    /// name to leave behind and vanishes with its last descriptor and
    /// mapping (Linux `O_TMPFILE`; elsewhere, or on a file system without
    /// it, a created file unlinked at once). -1 on failure (errno set).
    static func openScratchFile(inDirectory directory: String) -> Int32 {
        #if os(Linux)
        let fd = c_open(directory, 0o20000000 /* __O_TMPFILE */ | O_DIRECTORY | O_RDWR | O_CLOEXEC, 0o600)
        if fd >= 0 { return fd }
        #endif
        var template = Array((directory + "/.lodestone-scratch-XXXXXX").utf8CString)
        let fd2 = template.withUnsafeMutableBufferPointer { c_mkstemp($0.baseAddress!) }
        guard fd2 >= 0 else { return -1 }
        _ = template.withUnsafeBufferPointer { c_unlinkC($0.baseAddress!) }
        return fd2
    }

    /// Gives `fd` disk blocks for `length` bytes from `offset`, so that a
    /// shared mapping of them never meets a full disk (which would raise
    /// SIGBUS): 0, or the error number.
    static func allocateFileSpace(_ fd: Int32, offset: Int, length: Int) -> Int32 {
        c_posix_fallocate(fd, off_t(offset), off_t(length))
    }

    /// Maps `size` bytes of `fd` from `offset` shared (writes reach the
    /// file): nil on failure (errno set).
    static func mapShared(_ fd: Int32, offset: Int, size: Int) -> UnsafeMutableRawPointer? {
        guard let p = c_mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset)), p != MAP_FAILED else {
            return nil
        }
        return p
    }

    /// Maps `size` bytes of `fd` from `offset` copy-on-write in place of
    /// what is mapped at `address`: mapped elsewhere first, then moved over
    /// it (the kernel swaps the pages under one hold of its mapping lock, so
    /// a reader there sees the old pages or the new ones, never a gap).
    /// False when it could not, with the old mapping in place. Should the
    /// move itself fail, the range is mapped again directly (`MAP_FIXED`);
    /// if even that fails no reader could use the range, and the process
    /// stops.
    static func remapPrivate(_ fd: Int32, offset: Int, at address: UnsafeMutableRawPointer, size: Int) -> Bool {
        #if os(Linux)
        let result = lodestone_map_private_over(fd, Int64(offset), address, size)
        if result >= 0 { return result == 0 }
        guard let p = c_mmap(address, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, off_t(offset)),
              p == address else {
            fatalError("Lodestone: could not map \(size) bytes of records back in place (errno \(-result), then \(errno)); "
                       + "their data is safe in the segment just persisted")
        }
        return true
        #else
        return false
        #endif
    }

    /// Frees the disk blocks under `length` bytes of `fd` from `offset`; the
    /// file keeps its size and the range reads back as zeros (Linux
    /// `FALLOC_FL_PUNCH_HOLE`, in C: Glibc's Swift module lacks it): 0, or
    /// the error number (elsewhere, ENOTSUP).
    static func punchHole(_ fd: Int32, offset: Int, length: Int) -> Int32 {
        lodestone_punch_hole(fd, Int64(offset), Int64(length))
    }

    /// Releases the whole pages within `size` bytes from `pointer` from this
    /// process's memory (`MADV_DONTNEED`). Only for shared file mappings:
    /// their content stays in the file and comes back on the next access
    /// (private or anonymous memory would read back as zeros).
    static func dropResidentFilePages(_ pointer: UnsafeRawPointer, size: Int) {
        let page = UInt(pageSize)
        let start = (UInt(bitPattern: pointer) + page - 1) & ~(page - 1)
        let end = (UInt(bitPattern: pointer) + UInt(size)) & ~(page - 1)
        guard end > start else { return }
        _ = c_madvise(UnsafeMutableRawPointer(bitPattern: start)!, Int(end - start), 4 /* MADV_DONTNEED */)
    }

    /// Asks the kernel to reclaim the pages within `size` bytes from
    /// `pointer` now (Linux `MADV_PAGEOUT`, a hint: pages another mapping
    /// uses, or changed private pages without swap, stay). Safe on any
    /// memory, unlike ``dropResidentFilePages(_:size:)``: nothing is lost.
    static func pageOut(_ pointer: UnsafeRawPointer, size: Int) {
        #if os(Linux)
        let page = UInt(pageSize)
        let start = (UInt(bitPattern: pointer) + page - 1) & ~(page - 1)
        let end = (UInt(bitPattern: pointer) + UInt(size)) & ~(page - 1)
        guard end > start else { return }
        _ = c_madvise(UnsafeMutableRawPointer(bitPattern: start)!, Int(end - start), 21 /* MADV_PAGEOUT */)
        #endif
    }

    /// A monotonic clock, in nanoseconds.
    static func monotonicNanoseconds() -> Int {
        var t = timespec()
        _ = c_clock_gettime(&t)
        return Int(t.tv_sec) * 1_000_000_000 + Int(t.tv_nsec)
    }

    /// The size of a memory page.
    static let pageSize = max(c_sysconf(Int32(_SC_PAGESIZE)), 4096)

    static func sleep(microseconds: UInt32) { _ = c_usleep(microseconds) }
    static var processID: Int32 { c_getpid() }
    static func kill(_ pid: Int32, _ signal: Int32) -> Int32 { c_kill(pid, signal) }
    /// Processors online now.
    static var onlineProcessors: Int { max(1, Int(c_sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Starts a detached thread running `body`, named `name` (at most 15
    /// bytes on Linux), as `top -H`, `ps -L` and debuggers show it.
    static func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadStart(name: name, body: body)).toOpaque()
        #if canImport(Darwin)
        var thread: pthread_t? = nil
        let result = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadStart>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, box)
        #else
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box)
        #endif
        precondition(result == 0, "Lodestone: cannot start a thread (pthread_create: \(result))")
        #if canImport(Darwin)
        _ = pthread_detach(thread!)
        #else
        _ = pthread_detach(thread)
        #endif
    }
}

/// What a new thread runs.
private final class ThreadStart {
    let name: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) { (self.name, self.body) = (name, body) }
    func run() {
        #if canImport(Darwin)
        _ = pthread_setname_np(String(decoding: name.utf8.prefix(63), as: UTF8.self))
        #else
        // pthread_setname_np is a GNU extension Swift's Glibc module leaves
        // out; the kernel takes the name through procfs as well.
        let fd = c_open("/proc/thread-self/comm", O_WRONLY, 0)
        if fd >= 0 {
            let bytes = Array(name.utf8.prefix(15))
            _ = bytes.withUnsafeBytes { c_write(fd, $0.baseAddress!, $0.count) }
            _ = c_close(fd)
        }
        #endif
        body()
    }
}

// At file scope these names are the C library's (inside the enum they would
// be its own members).
@inline(__always) private func c_open(_ p: String, _ f: Int32, _ m: mode_t) -> Int32 { open(p, f, m) }
@inline(__always) private func c_close(_ fd: Int32) -> Int32 { close(fd) }
@inline(__always) private func c_read(_ fd: Int32, _ b: UnsafeMutableRawPointer, _ n: Int) -> Int { read(fd, b, n) }
@inline(__always) private func c_pread(_ fd: Int32, _ b: UnsafeMutableRawPointer, _ n: Int, _ o: off_t) -> Int {
    pread(fd, b, n, o)
}
@inline(__always) private func c_write(_ fd: Int32, _ b: UnsafeRawPointer, _ n: Int) -> Int { write(fd, b, n) }
@inline(__always) private func c_pwrite(_ fd: Int32, _ b: UnsafeRawPointer, _ n: Int, _ o: off_t) -> Int {
    pwrite(fd, b, n, o)
}
@inline(__always) private func c_fsync(_ fd: Int32) -> Int32 { fsync(fd) }
@inline(__always) private func c_fdatasync(_ fd: Int32) -> Int32 {
    #if canImport(Darwin)
    fsync(fd)
    #else
    fdatasync(fd)
    #endif
}
@inline(__always) private func c_ftruncate(_ fd: Int32, _ n: off_t) -> Int32 { ftruncate(fd, n) }
@inline(__always) private func c_rename(_ a: String, _ b: String) -> Int32 { rename(a, b) }
@inline(__always) private func c_unlink(_ p: String) -> Int32 { unlink(p) }
@inline(__always) private func c_unlinkC(_ p: UnsafePointer<CChar>) -> Int32 { unlink(p) }
@inline(__always) private func c_mkstemp(_ t: UnsafeMutablePointer<CChar>) -> Int32 { mkstemp(t) }
@inline(__always) private func c_posix_fallocate(_ fd: Int32, _ o: off_t, _ n: off_t) -> Int32 {
    #if canImport(Darwin)
    // No posix_fallocate: extend the file (the blocks come on first write).
    let end = o + n
    var st = stat()
    if fstat(fd, &st) == 0 && st.st_size >= end { return 0 }
    return ftruncate(fd, end) == 0 ? 0 : errno
    #else
    posix_fallocate(fd, o, n)
    #endif
}
@inline(__always) private func c_mkdir(_ p: String, _ m: mode_t) -> Int32 { mkdir(p, m) }
@inline(__always) private func c_link(_ a: String, _ b: String) -> Int32 { link(a, b) }
@inline(__always) private func c_rmdir(_ p: String) -> Int32 { rmdir(p) }
@inline(__always) private func c_access(_ p: String, _ m: Int32) -> Int32 { access(p, m) }
@inline(__always) private func c_fstat(_ fd: Int32, _ st: inout stat) -> Int32 { fstat(fd, &st) }
@inline(__always) private func c_stat(_ p: String, _ st: inout stat) -> Int32 { stat(p, &st) }
@inline(__always) private func c_flock(_ fd: Int32, _ op: Int32) -> Int32 { flock(fd, op) }
#if canImport(Darwin)
private typealias DirectoryHandle = UnsafeMutablePointer<DIR>
#else
private typealias DirectoryHandle = OpaquePointer
#endif
@inline(__always) private func c_opendir(_ p: String) -> DirectoryHandle? { opendir(p) }
@inline(__always) private func c_closedir(_ d: DirectoryHandle) { _ = closedir(d) }
@inline(__always) private func c_readdir(_ d: DirectoryHandle) -> UnsafeMutablePointer<dirent>? { readdir(d) }
@inline(__always) private func c_mmap(_ a: UnsafeMutableRawPointer?, _ n: Int, _ prot: Int32, _ flags: Int32, _ fd: Int32,
                                      _ o: off_t) -> UnsafeMutableRawPointer? {
    mmap(a, n, prot, flags, fd, o)
}
@inline(__always) private func c_munmap(_ p: UnsafeMutableRawPointer, _ n: Int) -> Int32 { munmap(p, n) }
@inline(__always) private func c_madvise(_ p: UnsafeMutableRawPointer, _ n: Int, _ a: Int32) -> Int32 { madvise(p, n, a) }
@inline(__always) private func c_clock_gettime(_ t: inout timespec) -> Int32 { clock_gettime(CLOCK_MONOTONIC, &t) }
@inline(__always) private func c_usleep(_ us: UInt32) -> Int32 { usleep(us) }
@inline(__always) private func c_getpid() -> Int32 { getpid() }
@inline(__always) private func c_kill(_ pid: Int32, _ s: Int32) -> Int32 { kill(pid, s) }
@inline(__always) private func c_sysconf(_ n: Int32) -> Int { sysconf(n) }
