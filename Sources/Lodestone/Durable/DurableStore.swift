import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The crash-safe directory under every durable index: a `LOCK` file (one
/// writing process), a `MANIFEST` naming the current segment and log, the
/// segment, and the write-ahead log of every change since.
///
/// It knows nothing of what the records mean: its owner encodes them, says
/// how to apply one (at open, replaying the log) and how to write a segment
/// (at persist). The contract it keeps:
/// - ``append(_:apply:)`` logs a record and applies it under one writer
///   lock, and returns once the record is durable (per ``Durability``);
/// - ``persist(writeSegment:)`` writes a new segment generation, switches
///   the manifest atomically, starts an empty log and deletes the old files;
///   a crash at any point leaves the old state or the new one;
/// - opening replays the log over the segment, drops a torn last record,
///   refuses damage followed by more records, and removes leftover files.
final class DurableStore: @unchecked Sendable {
    // @unchecked: mutable state lives in the lock.

    let directory: String
    /// Opened read-only: a shared lock (other readers welcome, no writer),
    /// nothing written, persist refused.
    let readOnly: Bool
    /// Log records replayed when this instance opened.
    let replayedRecords: Int
    /// Bytes of a torn last log record dropped when this instance opened.
    let droppedTailBytes: Int

    private struct State {
        var manifest: Manifest
        var log: WriteAheadLog
        /// Bytes of records applied without logging (``writeUnlogged(_:)``)
        /// since the last persist: only a persist commits them.
        var unloggedBytes = 0
    }
    private let state: Locked<State>
    /// What the store has done since it opened (syncs, persists); every
    /// log it writes counts into it.
    let activity: StoreActivity
    /// The directory lock's descriptor; -1 once released.
    private let lockDescriptor: Locked<Int32>

    private init(directory: String, manifest: Manifest, log: WriteAheadLog, replayed: Int, dropped: Int, lock: Int32,
                 readOnly: Bool = false) {
        self.directory = directory
        self.readOnly = readOnly
        self.state = Locked(State(manifest: manifest, log: log))
        self.activity = log.activity
        self.replayedRecords = replayed
        self.droppedTailBytes = dropped
        self.lockDescriptor = Locked(lock)
    }

    deinit { releaseLock() }

    /// Releases the directory's lock, so the directory can be opened again
    /// (in this process or another). The owner must not write afterwards.
    func releaseLock() {
        lockDescriptor.withLock { fd in
            if fd >= 0 { Self.unlockDirectory(fd) }
            fd = -1
        }
    }

    // MARK: Creating and opening

    /// Creates `directory` (if missing) with an empty log and a manifest
    /// holding `settings`; fails if it already holds an index.
    static func create(directory: String, settings: [UInt8], durability: Durability) throws(LodestoneError) -> DurableStore {
        try makeDirectory(directory)
        let lock = try lockDirectory(directory)
        do throws(LodestoneError) {
            guard !SystemCalls.exists(directory + "/" + Manifest.fileName) else {
                throw .invalidArgument(name: "directory", reason: "\(directory) already holds an index (it has a MANIFEST)")
            }
            // Files of an earlier create that crashed before its manifest
            // was in place (the index never existed).
            removeLeftovers(in: directory, keeping: ["LOCK"])
            let manifest = Manifest(generation: 1, segment: "", log: "wal-1.log", settings: settings)
            let log = try WriteAheadLog(path: directory + "/" + manifest.log, validLength: 0, durability: durability,
                                        activity: StoreActivity())
            try log.sync()
            try manifest.write(to: directory)
            return DurableStore(directory: directory, manifest: manifest, log: log, replayed: 0, dropped: 0, lock: lock)
        } catch {
            unlockDirectory(lock)
            throw error
        }
    }

    /// Opens `directory`: reads the manifest, lets `load` build the owner's
    /// state from it (the segment path is `directory/manifest.segment`, or
    /// there is no segment yet), replays every complete log record through
    /// `replay`, and removes files a crash left behind. `readOnly` takes
    /// the lock shared (any number of readers, no writer) and changes no
    /// file: a torn log tail is skipped, not cut off.
    static func open<Owner>(directory: String, durability: Durability, readOnly: Bool = false,
                            load: (Manifest) throws(LodestoneError) -> Owner,
                            replay: (Owner, [UInt8]) throws(LodestoneError) -> Void)
        throws(LodestoneError) -> (store: DurableStore, owner: Owner)
    {
        let lock = try lockDirectory(directory, shared: readOnly)
        do throws(LodestoneError) {
            let manifest = try Manifest.read(from: directory)
            let owner = try load(manifest)
            let logPath = directory + "/" + manifest.log
            let (records, validLength, fileLength) = try WriteAheadLog.read(path: logPath)
            for (i, record) in records.enumerated() {
                do throws(LodestoneError) {
                    try replay(owner, record)
                } catch let .corruptSegment(_, section, reason) where section == LogRecord.corruptSection {
                    throw .corruptSegment(path: logPath, section: "log record \(i)", reason: reason)
                } catch {
                    throw .corruptSegment(path: logPath, section: "log record \(i)", reason: "cannot be applied: \(error)")
                }
            }
            let log = try WriteAheadLog(path: logPath, validLength: validLength, durability: durability,
                                        readOnly: readOnly, activity: StoreActivity())
            if !readOnly {
                removeLeftovers(in: directory, keeping: [manifest.segment, manifest.delta, manifest.log, Manifest.fileName, "LOCK"])
            }
            let store = DurableStore(directory: directory, manifest: manifest, log: log, replayed: records.count,
                                     dropped: fileLength - validLength, lock: lock, readOnly: readOnly)
            return (store, owner)
        } catch {
            unlockDirectory(lock)
            throw error
        }
    }

    /// The settings the manifest carries (written at create).
    var settings: [UInt8] { state.withLock { $0.manifest.settings } }

    /// The current manifest generation (1 when created, +1 per persist).
    var generation: UInt64 { state.withLock { $0.manifest.generation } }

    /// Bytes in the current log (what opening would replay).
    var logBytes: Int { state.withLock { $0.log.size } }

    /// Whether the log refuses records after a failure it could not undo (a
    /// failed group-commit flush, or a failed record that could not be cut
    /// off). The owner recovers by persisting: the new segment is written
    /// from memory and a new log replaces the old one.
    var needsRecovery: Bool { state.withLock { $0.log.unusable != nil } }

    /// Bytes of records applied since the last persist, logged or not:
    /// what the next persist commits.
    var pendingBytes: Int { state.withLock { $0.log.size + $0.unloggedBytes } }

    /// Whether records were applied without logging since the last persist.
    var hasUnlogged: Bool { state.withLock { $0.unloggedBytes > 0 } }

    /// The current segment's path, or nil before the first persist.
    var segmentPath: String? {
        state.withLock { $0.manifest.segment.isEmpty ? nil : directory + "/" + $0.manifest.segment }
    }

    /// The current delta's path, or nil when the segment has none.
    var deltaPath: String? {
        state.withLock { $0.manifest.delta.isEmpty ? nil : directory + "/" + $0.manifest.delta }
    }

    // MARK: Writing

    /// Logs `record`, then runs `apply` (still under the writer lock, so
    /// records are applied in log order), then waits until the record is
    /// durable. If logging fails nothing is applied.
    func append<T>(_ record: [UInt8], apply: () throws(LodestoneError) -> T) throws(LodestoneError) -> T {
        try write { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T in
            try log(record)
            return try apply()
        }
    }

    /// Runs `body` under the writer lock with a function that appends a
    /// record to the log (a body may read state, decide, then log and apply
    /// without another writer slipping in between); then waits until what
    /// it logged is durable.
    func write<T>(_ body: (_ log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T)
        throws(LodestoneError) -> T
    {
        try write(unlessUnlogged: false, body)!
    }

    /// ``write(_:)``, or nil without running `body` when `unlessUnlogged`
    /// and records applied without logging wait for a persist: a logged
    /// record replayed over a segment that lacks them would apply to a
    /// state that never existed, so the owner persists first.
    func write<T>(unlessUnlogged: Bool, _ body: (_ log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T)
        throws(LodestoneError) -> T?
    {
        let written = try state.withLock { (s: inout State) throws(LodestoneError) -> (T, WriteAheadLog, Int)? in
            if unlessUnlogged && s.unloggedBytes > 0 { return nil }
            let log = s.log
            let result = try body { (record: [UInt8]) throws(LodestoneError) in try log.append(record) }
            return (result, log, log.size)
        }
        guard let (result, log, end) = written else { return nil }
        if log.durability == .groupCommit && !readOnly {
            // Outside the writer lock, so other writers append meanwhile and
            // share this flush.
            try log.flush(upTo: end) { state.withLock { $0.log === log ? $0.log.size : end } }
        }
        return result
    }

    /// Runs `body` under the writer lock like ``write(_:)``, but what it
    /// "logs" is only counted, not written: the changes it applies are
    /// committed by the next persist, and a crash before then loses them
    /// (the segment and log keep the state before them). For bulk loads,
    /// which then write their data once, to segments, instead of twice.
    /// Until that persist, ``write(unlessUnlogged:_:)`` refuses logged
    /// writes.
    func writeUnlogged<T>(_ body: (_ log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T)
        throws(LodestoneError) -> T
    {
        guard !readOnly else { throw .readOnly(name: directory) }
        return try state.withLock { (s: inout State) throws(LodestoneError) -> T in
            var counted = 0
            defer { s.unloggedBytes += counted }
            return try body { (record: [UInt8]) throws(LodestoneError) in counted += max(1, record.count) }
        }
    }

    /// What a persist wrote: a whole new segment, or a delta over the
    /// current one.
    enum Written {
        case segment
        case delta
    }

    /// Where a delta would go: its path, and the path of the current
    /// segment it would describe changes against.
    struct DeltaTarget {
        let path: String
        let segment: String
    }

    /// How the owner writes a persist: given the path for a new segment and
    /// (when there is a segment to describe changes against) where a delta
    /// over it would go, writes one of them and says which. It runs under
    /// the writer lock: it must not call back into the store.
    typealias PersistWriter = (_ segmentPath: String, _ delta: DeltaTarget?) throws(LodestoneError) -> Written

    /// Writes a new segment generation with `writeSegment(path)`, points the
    /// manifest at it and at a new empty log, then deletes the old segment
    /// and log. Writers wait meanwhile; the owner's readers do not.
    func persist(writeSegment: (String) throws(LodestoneError) -> Void) throws(LodestoneError) {
        try persist(write: { (path, _) throws(LodestoneError) in
            try writeSegment(path)
            return .segment
        })
    }

    /// Persists with `write`, which writes a new segment or a delta over the
    /// current segment (replacing any earlier delta: a delta holds every
    /// change since its segment). The manifest then names the files written
    /// (a delta: the same segment, the new delta) and a new empty log; the
    /// files it no longer names are deleted. `committed` runs under the
    /// writer lock once the new manifest is in place, before any other
    /// write. Writers wait meanwhile; the owner's readers do not.
    func persist(write: PersistWriter, committed: (Written) -> Void = { _ in }) throws(LodestoneError) {
        guard !readOnly else { throw .readOnly(name: directory) }
        try state.withLock { (s: inout State) throws(LodestoneError) in
            try persistLocked(&s, write: write, committed: committed)
        }
    }

    private func persistLocked(_ s: inout State, write: PersistWriter, committed: (Written) -> Void = { _ in })
        throws(LodestoneError)
    {
        let generation = s.manifest.generation + 1
        let segment = "segment-\(generation).lodestone", delta = "delta-\(generation).lodestone"
        let logName = "wal-\(generation).log"
        let target = s.manifest.segment.isEmpty ? nil
            : DeltaTarget(path: directory + "/" + delta, segment: directory + "/" + s.manifest.segment)
        let start = ContinuousClock.now
        let written = try write(directory + "/" + segment, target)
        let log = try WriteAheadLog(path: directory + "/" + logName, validLength: 0, durability: s.log.durability,
                                    activity: activity)
        try log.sync()
        try SegmentWriter.syncDirectory(of: directory + "/" + logName)
        var next = Manifest(generation: generation, segment: segment, log: logName, settings: s.manifest.settings)
        if written == .delta {
            next.segment = s.manifest.segment
            next.delta = delta
        }
        let old = s.manifest, unlogged = s.unloggedBytes
        // Once the new manifest is in place, writes must go to the new
        // log even if syncing the directory then fails.
        var switched = false
        do throws(LodestoneError) {
            try next.write(to: directory) {
                s.manifest = next
                s.log = log
                s.unloggedBytes = 0
                switched = true
                committed(written)
            }
        } catch {
            // Renamed but the directory sync failed: until a sync confirms
            // the new manifest, a power cut could bring back the old one,
            // which does not name the new log. Have the next write persist
            // again first; unlogged changes are not committed either.
            if switched {
                log.refuse(after: error)
                s.unloggedBytes = unlogged
            }
            throw error
        }
        // The old files are no longer referenced (an open mapping keeps
        // the old segment's pages alive until its index lets go of it).
        for file in [old.segment, old.delta, old.log] where !file.isEmpty && file != next.segment {
            StorageIO.unlink(directory + "/" + file)
        }
        activity.persisted(delta: written == .delta, since: start)
    }

    // MARK: Snapshots

    /// Writes a consistent copy of the store as of now into `target` (a
    /// directory that must not hold an index): a closed, complete store
    /// that ``open(directory:durability:load:replay:)`` opens as it is.
    ///
    /// If the log holds records they are first folded into a new segment
    /// (``persist(writeSegment:)``); then the segment, which is immutable,
    /// is hard-linked into `target` (copied where linking fails, as across
    /// file systems), and an empty log and a manifest naming both are
    /// written and synced. Writers wait meanwhile; readers do not. A crash
    /// part-way leaves `target` without a manifest: not a store.
    func snapshot(into target: String, write: PersistWriter, committed: (Written) -> Void = { _ in })
        throws(LodestoneError)
    {
        try state.withLock { (s: inout State) throws(LodestoneError) in
            if s.log.size > 0 || s.unloggedBytes > 0 {
                // A read-only store cannot fold its log into a segment.
                guard !readOnly else { throw .readOnly(name: directory) }
                try persistLocked(&s, write: write, committed: committed)
            }
            try Self.copyStore(manifest: s.manifest, from: directory, to: target)
        }
    }

    /// Copies the closed store in `source` (its manifest and segment; its
    /// log must be empty, as a snapshot's is) into a new store in `target`.
    static func restore(from source: String, into target: String) throws(LodestoneError) {
        let manifest = try Manifest.read(from: source)
        let (records, _, _) = try WriteAheadLog.read(path: source + "/" + manifest.log)
        guard records.isEmpty else {
            throw .invalidArgument(name: "snapshot", reason: "\(source) has \(records.count) log records: "
                                   + "it is a live index directory, not a snapshot")
        }
        try copyStore(manifest: manifest, from: source, to: target)
    }

    /// Deletes the store in `directory` under its exclusive lock (another
    /// handle holding it: ``LodestoneError/directoryLocked(path:inThisProcess:)``,
    /// nothing deleted). The manifest goes first, so a crash part-way leaves
    /// no half store.
    static func remove(directory: String) throws(LodestoneError) {
        let lock = try lockDirectory(directory)
        defer { unlockDirectory(lock) }
        StorageIO.unlink(directory + "/" + Manifest.fileName)
        for file in directoryEntries(directory) { StorageIO.unlink(directory + "/" + file) }
        guard SystemCalls.rmdir(directory) == 0 else { throw .io(path: directory, operation: "rmdir", errno: errno) }
    }

    /// Links (or copies) `manifest`'s segment from `source` into `target`,
    /// with a new empty log and the manifest written last.
    private static func copyStore(manifest: Manifest, from source: String, to target: String) throws(LodestoneError) {
        try makeDirectory(target)
        guard !SystemCalls.exists(target + "/" + Manifest.fileName) else {
            throw .invalidArgument(name: "directory", reason: "\(target) already holds an index (it has a MANIFEST)")
        }
        for file in [manifest.segment, manifest.delta] where !file.isEmpty {
            try linkOrCopy(source + "/" + file, to: target + "/" + file)
        }
        let log = try WriteAheadLog(path: target + "/" + manifest.log, validLength: 0, durability: .synchronous)
        try log.sync()
        try SegmentWriter.syncDirectory(of: target + "/" + manifest.log)
        try manifest.write(to: target)
    }

    /// A hard link to `source` at `target`, or a synced copy where the
    /// file system refuses the link.
    private static func linkOrCopy(_ source: String, to target: String) throws(LodestoneError) {
        StorageIO.unlink(target)
        if SystemCalls.link(source, target) == 0 { return }
        let bytes = try VectorFiles.readFile(source)
        let fd = StorageIO.open(target, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .io(path: target, operation: "open", errno: errno) }
        defer { SystemCalls.close(fd) }
        try withBytes(bytes) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in
            try POSIXFile.writeAll(fd, b, at: 0, path: target)
        }
        guard StorageIO.fsync(fd) == 0 else { throw .io(path: target, operation: "fsync", errno: errno) }
    }
}
