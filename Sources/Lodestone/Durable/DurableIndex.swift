import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An HNSW index kept in a directory and durable across crashes.
///
/// The directory holds a `MANIFEST` naming the current segment (the last
/// persisted index, opened by `mmap`) and the write-ahead log of every
/// upsert and removal since. A write is validated, appended to the log
/// (`fdatasync`ed with the default ``Durability/synchronous``), then applied
/// to the in-memory index that searches see at once; when the call returns
/// it survives a crash. ``persist()`` writes a new segment, switches the
/// manifest to it atomically and starts an empty log. Opening replays the
/// log over the segment; a record torn by a crash is dropped, never
/// half-applied.
///
/// Writers are serialised; searches go straight to ``index`` and never wait
/// for them.
public final class DurableIndex: @unchecked Sendable {
    // @unchecked: mutable state lives in the Mutex; `index` is Sendable.

    /// The directory.
    public let directory: String
    /// The index searches run on (it includes every acknowledged write).
    public let index: HNSWIndex
    /// Log records replayed when this instance opened.
    public let replayedRecords: Int
    /// Bytes of a torn last log record dropped when this instance opened.
    public let droppedTailBytes: Int

    private struct State {
        var manifest: Manifest
        var log: WriteAheadLog
    }
    private let state: Mutex<State>
    /// The `LOCK` file, held with `flock` for this instance's lifetime: one
    /// process at a time may write the directory.
    private let lockDescriptor: Int32

    private static let upsertOp: UInt8 = 1
    private static let removeOp: UInt8 = 2

    private init(directory: String, index: HNSWIndex, manifest: Manifest, log: WriteAheadLog, replayed: Int, dropped: Int,
                 lock: Int32) {
        self.lockDescriptor = lock
        self.directory = directory
        self.index = index
        self.state = Mutex(State(manifest: manifest, log: log))
        self.replayedRecords = replayed
        self.droppedTailBytes = dropped
    }

    deinit { close(lockDescriptor) }

    /// Takes the directory's lock, or throws if another process holds it.
    private static func lockDirectory(_ directory: String) throws(LodestoneError) -> Int32 {
        let path = directory + "/LOCK"
        #if canImport(Glibc)
        let fd = Glibc.open(path, O_RDWR | O_CREAT, 0o644)
        #else
        let fd = Darwin.open(path, O_RDWR | O_CREAT, 0o644)
        #endif
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK {
                throw .invalidArgument(name: "directory", reason: "\(directory) is open in another process (LOCK is held)")
            }
            throw .io(path: path, operation: "flock", errno: e)
        }
        return fd
    }

    // MARK: Creating and opening

    /// Creates an empty durable index in `directory` (made if missing; it
    /// must not already hold an index).
    public static func create(directory: String, dimension: Int, metric: Metric,
                              parameters: HNSWParameters = HNSWParameters(), embeddingModel: String = "",
                              durability: Durability = .synchronous) throws(LodestoneError) -> DurableIndex {
        let index = try HNSWIndex(dimension: dimension, metric: metric, parameters: parameters, embeddingModel: embeddingModel)
        try makeDirectory(directory)
        let lock = try lockDirectory(directory)
        guard access(directory + "/" + Manifest.fileName, F_OK) != 0 else {
            close(lock)
            throw .invalidArgument(name: "directory", reason: "\(directory) already holds an index (it has a MANIFEST)")
        }
        let manifest = Manifest(generation: 1, segment: "", log: "wal-1.log",
                                settings: encodeSettings(index))
        do throws(LodestoneError) {
            let log = try WriteAheadLog(path: directory + "/" + manifest.log, validLength: 0, durability: durability)
            try log.sync()
            try manifest.write(to: directory)
            return DurableIndex(directory: directory, index: index, manifest: manifest, log: log, replayed: 0, dropped: 0,
                                lock: lock)
        } catch {
            close(lock)
            throw error
        }
    }

    /// Opens the durable index in `directory`: maps its segment, replays its
    /// log, drops a torn last record, and removes files a crash left behind.
    public static func open(directory: String, durability: Durability = .synchronous) throws(LodestoneError) -> DurableIndex {
        let lock = try lockDirectory(directory)
        do throws(LodestoneError) {
            return try openLocked(directory: directory, durability: durability, lock: lock)
        } catch {
            close(lock)
            throw error
        }
    }

    private static func openLocked(directory: String, durability: Durability, lock: Int32) throws(LodestoneError) -> DurableIndex {
        let manifest = try Manifest.read(from: directory)
        let settings = try decodeSettings(manifest.settings, path: directory + "/" + Manifest.fileName)
        let index: HNSWIndex
        if manifest.segment.isEmpty {
            index = try HNSWIndex(dimension: settings.dimension, metric: settings.metric, parameters: settings.parameters,
                                  embeddingModel: settings.model)
        } else {
            index = try HNSWIndex.open(path: directory + "/" + manifest.segment)
            guard index.dimension == settings.dimension && index.metric == settings.metric else {
                throw .corruptSegment(path: directory + "/" + manifest.segment, section: "parameters",
                                      reason: "does not match the manifest's dimension and metric")
            }
        }
        let logPath = directory + "/" + manifest.log
        let (records, validLength, fileLength) = try WriteAheadLog.read(path: logPath)
        for (i, record) in records.enumerated() {
            do throws(LodestoneError) {
                try apply(record, to: index)
            } catch {
                throw .corruptSegment(path: logPath, section: "log record \(i)", reason: "cannot be applied: \(error)")
            }
        }
        let log = try WriteAheadLog(path: logPath, validLength: validLength, durability: durability)
        removeLeftovers(in: directory, keeping: [manifest.segment, manifest.log, Manifest.fileName])
        return DurableIndex(directory: directory, index: index, manifest: manifest, log: log,
                            replayed: records.count, dropped: fileLength - validLength, lock: lock)
    }

    // MARK: Writing

    /// Adds or replaces vectors (row-major) under `keys`. Validated first as
    /// a whole (nothing is logged or applied on error), then logged, then
    /// applied.
    public func upsert(_ vectors: [Float], keys: [UInt64], threads: Int = 1) throws(LodestoneError) {
        let d = index.dimension
        guard vectors.count == keys.count * d else {
            throw .dimensionMismatch(expected: d, actual: keys.isEmpty ? vectors.count : vectors.count / keys.count)
        }
        var seen = Set<UInt64>()
        for key in keys where !seen.insert(key).inserted { throw .duplicateKey(key) }
        _ = try FlatIndex.prepareRows(vectors, count: keys.count, dimension: d, metric: index.metric, kernels: index.kernels)
        var w = ByteWriter()
        w.raw([DurableIndex.upsertOp])
        w.u32(UInt32(keys.count))
        w.u32(UInt32(d))
        for (i, key) in keys.enumerated() {
            w.u64(key)
            for j in 0..<d { w.u32(vectors[i * d + j].bitPattern) }
        }
        let record = w.bytes
        let pending = try state.withLock { (s: inout State) throws(LodestoneError) -> (WriteAheadLog, Int) in
            try s.log.append(record)
            try DurableIndex.applyUpsert(vectors, keys: keys, to: index, threads: threads)
            return (s.log, s.log.size)
        }
        try waitUntilDurable(pending)
    }

    /// With group commit, waits (outside the writer lock, so other writers
    /// can append meanwhile) until a flush covers this writer's record.
    private func waitUntilDurable(_ pending: (log: WriteAheadLog, end: Int)) throws(LodestoneError) {
        guard pending.log.durability == .groupCommit else { return }
        try pending.log.flush(upTo: pending.end) { state.withLock { $0.log === pending.log ? $0.log.size : pending.end } }
    }

    /// Removes the vectors stored under `keys`; returns how many were there.
    @discardableResult
    public func remove(keys: [UInt64]) throws(LodestoneError) -> Int {
        var w = ByteWriter()
        w.raw([DurableIndex.removeOp])
        w.u32(UInt32(keys.count))
        for key in keys { w.u64(key) }
        let record = w.bytes
        let (removed, log, end) = try state.withLock { (s: inout State) throws(LodestoneError) -> (Int, WriteAheadLog, Int) in
            try s.log.append(record)
            return (keys.reduce(0) { $0 + (index.remove(key: $1) ? 1 : 0) }, s.log, s.log.size)
        }
        try waitUntilDurable((log, end))
        return removed
    }

    /// Writes the index as a new segment (compacted: removed rows dropped,
    /// links remapped), points the manifest at it and at a new empty log,
    /// then deletes the old segment and log. A crash at any point leaves
    /// either the old state or the new one. Searches running meanwhile keep
    /// using the index they started on.
    public func persist() throws(LodestoneError) {
        try state.withLock { (s: inout State) throws(LodestoneError) in
            let generation = s.manifest.generation + 1
            let segment = "segment-\(generation).lodestone", logName = "wal-\(generation).log"
            try index.persist(to: directory + "/" + segment, compact: true)
            let log = try WriteAheadLog(path: directory + "/" + logName, validLength: 0, durability: s.log.durability)
            try log.sync()
            try SegmentWriter.syncDirectory(of: directory + "/" + logName)
            let next = Manifest(generation: generation, segment: segment, log: logName, settings: s.manifest.settings)
            let old = s.manifest
            // Once the new manifest is in place, writes must go to the new
            // log even if syncing the directory then fails.
            var switched = false
            try next.write(to: directory) {
                s.manifest = next
                s.log = log
                switched = true
            }
            guard switched else { return }
            // The old files are no longer referenced (an open mapping keeps
            // the old segment's pages alive until the index lets go of them).
            if !old.segment.isEmpty { unlink(directory + "/" + old.segment) }
            unlink(directory + "/" + old.log)
        }
    }

    /// The current manifest generation (1 for a new index, +1 per persist).
    public var generation: UInt64 { state.withLock { $0.manifest.generation } }

    // MARK: Log records

    private static func apply(_ record: [UInt8], to index: HNSWIndex) throws(LodestoneError) {
        var r = ByteReader(record) { .invalidArgument(name: "log record", reason: "truncated") }
        let op = try r.raw(1)[0]
        let count = Int(try r.u32())
        switch op {
        case upsertOp:
            let d = Int(try r.u32())
            guard d == index.dimension else { throw .dimensionMismatch(expected: index.dimension, actual: d) }
            guard count * (8 + 4 * d) == record.count - 9 else {
                throw .invalidArgument(name: "log record", reason: "\(count) vectors do not fill \(record.count) bytes")
            }
            var keys: [UInt64] = [], vectors: [Float] = []
            keys.reserveCapacity(count)
            vectors.reserveCapacity(count * d)
            for _ in 0..<count {
                keys.append(try r.u64())
                for _ in 0..<d { vectors.append(Float(bitPattern: try r.u32())) }
            }
            try applyUpsert(vectors, keys: keys, to: index, threads: 1)
        case removeOp:
            for _ in 0..<count { index.remove(key: try r.u64()) }
        default:
            throw .invalidArgument(name: "log record", reason: "unknown operation \(op)")
        }
    }

    private static func applyUpsert(_ vectors: [Float], keys: [UInt64], to index: HNSWIndex, threads: Int)
        throws(LodestoneError)
    {
        let d = index.dimension
        var newVectors: [Float] = [], newKeys: [UInt64] = []
        for (i, key) in keys.enumerated() {
            let v = Array(vectors[(i * d)..<((i + 1) * d)])
            if index.contains(key: key) {
                try index.replace(v, key: key)
            } else {
                newKeys.append(key)
                newVectors += v
            }
        }
        if !newKeys.isEmpty { try index.add(contentsOf: newVectors, keys: newKeys, threads: threads) }
    }

    // MARK: Settings and files

    private static func encodeSettings(_ index: HNSWIndex) -> [UInt8] {
        var w = ByteWriter()
        let p = index.parameters
        for v in [UInt64(index.dimension), index.metric.storageCode,
                  UInt64(p.m), UInt64(p.efConstruction), UInt64(p.efSearch), p.seed] { w.u64(v) }
        let model = Array(index.embeddingModel.utf8)
        w.u32(UInt32(model.count))
        w.raw(model)
        return w.bytes
    }

    private static func decodeSettings(_ bytes: [UInt8], path: String) throws(LodestoneError)
        -> (dimension: Int, metric: Metric, parameters: HNSWParameters, model: String)
    {
        var r = ByteReader(bytes) { .corruptSegment(path: path, section: "manifest", reason: "settings truncated") }
        func int() throws(LodestoneError) -> Int {
            guard let v = Int(exactly: try r.u64()), v <= 1 << 20 else {
                throw .corruptSegment(path: path, section: "manifest", reason: "absurd setting")
            }
            return v
        }
        let d = try int(), metricCode = try r.u64()
        let m = try int(), efc = try int(), efs = try int(), seed = try r.u64()
        let n = Int(try r.u32())
        let model = String(decoding: try r.raw(n), as: UTF8.self)
        guard let metric = Metric(storageCode: metricCode) else {
            throw .corruptSegment(path: path, section: "manifest", reason: "unknown metric")
        }
        return (d, metric,
                HNSWParameters(m: m, efConstruction: efc, efSearch: efs, seed: seed), model)
    }

    private static func makeDirectory(_ path: String) throws(LodestoneError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw .io(path: current, operation: "mkdir", errno: errno)
            }
        }
    }

    /// Deletes segments, logs and temporary files the manifest does not name
    /// (left by a crash between writing them and switching the manifest).
    private static func removeLeftovers(in directory: String, keeping: Set<String>) {
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            let ours = name.hasPrefix("segment-") || name.hasPrefix("wal-") || name.contains(".tmp")
            if ours && !keeping.contains(name) { unlink(directory + "/" + name) }
        }
    }
}
