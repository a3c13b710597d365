import CLodestoneKernels
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// When a write counts as durable.
public enum Durability: String, Sendable, Codable {
    /// `fsync` after every logged batch: a call that returned survives a
    /// crash or power cut (the default).
    case synchronous
    /// Group commit: each call still returns only once its record is on
    /// disk, but writers that arrive while a flush is running share the next
    /// one, so concurrent writers pay for one `fdatasync` between them.
    case groupCommit
    /// No `fsync`: a returned call survives a process crash (the data is in
    /// the kernel) but not a power cut; much faster for small batches.
    case none
}

/// An append-only log of checksummed, length-prefixed records.
///
/// Record layout (little-endian): payload length (UInt32), CRC-32C of the
/// payload (UInt32), payload. Replaying stops at the first record that is
/// incomplete or fails its checksum *at the end of the file* (a torn write
/// from a crash: dropped, never half-applied); a damaged record followed by
/// more data is corruption and is reported, not skipped.
final class WriteAheadLog: @unchecked Sendable {
    // @unchecked: used only under its owner's lock.
    let path: String
    private let fd: Int32
    private(set) var size: Int
    let durability: Durability
    /// Where its syncs are counted (the store's, across its logs).
    let activity: StoreActivity

    /// Set when the log can no longer take records: a record that failed
    /// could not be cut off again, or a group-commit flush failed (after a
    /// failed `fdatasync` the kernel may have dropped pages it never wrote,
    /// so nothing appended since can be trusted to reach the disk). The
    /// owner recovers by writing a new segment from memory and a new log.
    private let failure = Locked<LodestoneError?>(nil)

    /// Why the log refuses records, if it does.
    var unusable: LodestoneError? { failure.withLock { $0 } }

    static let recordHeader = 8
    static let maxRecord = 1 << 30
    /// Records are padded with zeros to this boundary (see `append`).
    static let sector = 512

    /// Opens (creating if needed) the log at `path` for appending, after
    /// cutting off a torn tail at `validLength`; or, `readOnly`, opens it
    /// as it is and refuses every record.
    init(path: String, validLength: Int? = nil, durability: Durability, readOnly: Bool = false,
         activity: StoreActivity = StoreActivity()) throws(LodestoneError) {
        self.path = path
        self.durability = durability
        self.activity = activity
        let fd = StorageIO.open(path, readOnly ? O_RDONLY : O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        guard let st = SystemCalls.status(fd) else {
            let e = errno
            SystemCalls.close(fd)
            throw .io(path: path, operation: "fstat", errno: e)
        }
        size = Int(st.st_size)
        if let validLength, validLength < size, !readOnly {
            guard StorageIO.ftruncate(fd, off_t(validLength)) == 0, StorageIO.fsync(fd) == 0 else {
                let e = errno
                SystemCalls.close(fd)
                throw .io(path: path, operation: "truncate torn tail", errno: e)
            }
            size = validLength
        }
        self.fd = fd
        if readOnly { failure.withLock { $0 = .readOnly(name: path) } }
    }

    deinit { SystemCalls.close(fd) }

    /// Appends one record; returns once it is as durable as `durability` says.
    func append(_ payload: [UInt8]) throws(LodestoneError) {
        guard payload.count <= WriteAheadLog.maxRecord else {
            throw .invalidArgument(name: "batch", reason: "\(payload.count) bytes in one log record; the limit is \(WriteAheadLog.maxRecord): split the batch")
        }
        if let refused = unusable { throw refused }
        var record = ByteWriter()
        record.u32(UInt32(payload.count))
        record.u32(payload.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) })
        record.raw(payload)
        if durability != .none {
            // Pad to the next sector: the next record's write then never
            // shares a sector with this one, so a disk that garbles the whole
            // sector of a write cut short cannot damage a record already
            // acknowledged.
            record.pad(to: (record.bytes.count + WriteAheadLog.sector - 1) / WriteAheadLog.sector * WriteAheadLog.sector)
        }
        let bytes = record.bytes
        do throws(LodestoneError) {
            try withBytes(bytes) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in
                try POSIXFile.writeAll(fd, b, at: size, path: path)
            }
        } catch {
            cutOff(after: error)
            throw error
        }
        if durability == .synchronous {
            guard activity.timedSync({ StorageIO.fdatasync(fd, path: path) }) == 0 else {
                // The caller is told the record failed and will not apply
                // it, so it must not stay in the file for a replay to find.
                let error = LodestoneError.io(path: path, operation: "fdatasync", errno: errno)
                cutOff(after: error)
                throw error
            }
        }
        size += bytes.count
    }

    /// Makes the log refuse records (its owner must persist first) because
    /// of `error`, which left what the log is part of unconfirmed on disk.
    func refuse(after error: LodestoneError) {
        markUnusable("the switch to this log was not confirmed on disk: \(error)", errno: EIO)
    }

    /// Records why the log refuses records from now on.
    private func markUnusable(_ reason: String, errno code: Int32) {
        failure.withLock {
            $0 = .io(path: path, operation: "append (\(reason); persist() or reopening the index recovers)", errno: code)
        }
    }

    /// Cuts the file back to the last whole record after a failed append, so
    /// the next record starts at a clean boundary; if even that fails, the
    /// log refuses further records.
    private func cutOff(after error: LodestoneError) {
        if StorageIO.ftruncate(fd, off_t(size)) != 0 {
            let code = errno
            markUnusable("the log could not be cut back after a failed write: \(error)", errno: code)
        }
    }

    private let flushLock = Locked<Int>(0)  // bytes known to be on disk

    /// Returns once the first `end` bytes are on disk: flushes them (and
    /// everything appended by then) unless a flush by another writer already
    /// covered them.
    func flush(upTo end: Int, currentSize: () -> Int) throws(LodestoneError) {
        try flushLock.withLock { (durable: inout Int) throws(LodestoneError) in
            guard durable < end else { return }
            if let refused = unusable { throw refused }
            let target = currentSize()
            guard activity.timedSync({ StorageIO.fdatasync(fd, path: path) }) == 0 else {
                let code = errno
                markUnusable("an earlier group-commit fdatasync of the log failed", errno: code)
                throw .io(path: path, operation: "fdatasync", errno: code)
            }
            durable = max(durable, target)
        }
    }

    /// Forces everything appended so far to disk.
    func sync() throws(LodestoneError) {
        guard StorageIO.fsync(fd) == 0 else { throw .io(path: path, operation: "fsync", errno: errno) }
    }

    /// The complete records of the log at `path`, the length of the prefix
    /// they fill (where a torn tail, if any, begins) and the file's length.
    static func read(path: String) throws(LodestoneError) -> (records: [[UInt8]], validLength: Int, fileLength: Int) {
        let bytes: [UInt8]
        do {
            bytes = try VectorFiles.readFile(path)
        } catch let LodestoneError.io(_, _, code) where code == ENOENT {
            return ([], 0, 0)
        }
        var records: [[UInt8]] = []
        var at = 0
        while at < bytes.count {
            // Zeros up to the next sector boundary are padding: a record
            // never starts with a zero length.
            if at % sector != 0 {
                let boundary = min((at / sector + 1) * sector, bytes.count)
                if bytes[at..<boundary].allSatisfy({ $0 == 0 }) {
                    at = boundary
                    continue
                }
            }
            guard bytes.count - at >= recordHeader else { break }  // torn header
            var r = ByteReader(Array(bytes[at..<(at + recordHeader)])) {
                .corruptSegment(path: path, section: "log record at offset \(at)", reason: "short header")
            }
            let length = Int(try r.u32()), crc = try r.u32()
            guard length > 0 else { break }  // a torn header (records are never empty)
            let end = at + recordHeader + length
            guard length <= maxRecord, end <= bytes.count else {
                if length > maxRecord && end < bytes.count {
                    throw .corruptSegment(path: path, section: "log record at offset \(at)", reason: "absurd length \(length)")
                }
                break  // torn: the record runs past the end of the file
            }
            let ok = bytes.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress! + at + recordHeader, length) } == crc
            guard ok else {
                if end == bytes.count { break }  // the last record, torn in place
                throw .corruptSegment(path: path, section: "log record at offset \(at)",
                                      reason: "checksum mismatch with \(bytes.count - end) bytes of later records")
            }
            records.append(Array(bytes[(at + recordHeader)..<end]))
            at = end
        }
        return (records, at, bytes.count)
    }
}

/// The directory's table of contents: which segment and which log make up
/// the index now, and the owner's settings (opaque bytes: storage does not
/// interpret them) needed to create the index when there is no segment yet.
/// Written atomically (temporary file, fsync, rename, fsync of the
/// directory) as `MANIFEST`.
struct Manifest: Equatable {
    var generation: UInt64
    var segment: String      // file name in the directory, "" when none yet
    var log: String          // file name of the write-ahead log
    var settings: [UInt8]
    /// File name of the delta applied over the segment, "" when none.
    var delta: String = ""

    static let fileName = "MANIFEST"
    static let magic: [UInt8] = Array("LODEMANI".utf8)
    /// The newest version read. A manifest naming a delta is written as
    /// version 2 (readers of version 1 refuse it rather than ignore the
    /// delta); one without, as version 1, which every reader opens.
    static let version: UInt32 = 2

    func encode() -> [UInt8] {
        var w = ByteWriter()
        w.raw(Manifest.magic)
        w.u32(delta.isEmpty ? 1 : 2)
        w.u64(generation)
        for b in [Array(segment.utf8), Array(log.utf8), settings] + (delta.isEmpty ? [] : [Array(delta.utf8)]) {
            w.u32(UInt32(b.count))
            w.raw(b)
        }
        var out = w.bytes
        var c = ByteWriter()
        c.u32(out.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) })
        out += c.bytes
        return out
    }

    static func decode(_ bytes: [UInt8], path: String) throws(LodestoneError) -> Manifest {
        func corrupt(_ reason: String) -> LodestoneError { .corruptSegment(path: path, section: "manifest", reason: reason) }
        guard bytes.count >= 16 else { throw corrupt("only \(bytes.count) bytes (truncated)") }
        let body = Array(bytes[0..<(bytes.count - 4)])
        var tail = ByteReader(Array(bytes[(bytes.count - 4)...])) { corrupt("truncated") }
        guard try tail.u32() == body.withUnsafeBytes({ lodestone_crc32c(0, $0.baseAddress, $0.count) }) else {
            throw corrupt("checksum mismatch")
        }
        var r = ByteReader(body) { corrupt("shorter than its fields") }
        guard try r.raw(8) == magic else { throw corrupt("no LODEMANI magic") }
        let version = try r.u32()
        guard version <= Manifest.version else {
            throw .unsupportedFormatVersion(path: path, found: Int(version), supported: Int(Manifest.version))
        }
        let generation = try r.u64()
        var fields: [[UInt8]] = []
        for _ in 0..<(version >= 2 ? 4 : 3) {
            let n = Int(try r.u32())
            guard n <= 1 << 16 else { throw corrupt("absurd field length \(n)") }
            fields.append(try r.raw(n))
        }
        let segment = String(decoding: fields[0], as: UTF8.self), log = String(decoding: fields[1], as: UTF8.self)
        let delta = version >= 2 ? String(decoding: fields[3], as: UTF8.self) : ""
        for name in [segment, log, delta] where name.contains("/") { throw corrupt("file name \(name) contains a slash") }
        guard delta.isEmpty || !segment.isEmpty else { throw corrupt("a delta (\(delta)) without a segment") }
        return Manifest(generation: generation, segment: segment, log: log, settings: fields[2], delta: delta)
    }

    /// Writes the manifest into `directory` atomically: after the rename
    /// `renamed` runs (the new manifest is in place), then the directory is
    /// synced, whose failure is thrown after `renamed` has run.
    func write(to directory: String, renamed: () -> Void = {}) throws(LodestoneError) {
        try POSIXFile.replace(directory + "/" + Manifest.fileName, with: encode(), renamed: renamed)
    }

    static func read(from directory: String) throws(LodestoneError) -> Manifest {
        let path = directory + "/" + fileName
        return try decode(try VectorFiles.readFile(path), path: path)
    }
}
