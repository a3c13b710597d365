import CLodestoneKernels
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Fixed-size records addressed by a node id, stored in chunks that never
/// move once published.
///
/// Readers may address records while a writer appends: growing allocates a
/// new chunk and publishes its pointer (release), readers load chunk pointers
/// with acquire, and no record is ever relocated. Chunk pointers live in a
/// table sized for `maxChunks`; the table is `calloc`ed, so its untouched
/// pages cost no resident memory.
///
/// An arena can also adopt records from a mapped segment *lazily*: each
/// chunk's pointer stays empty until the first access, which verifies the
/// chunk's checksum and content, then publishes it (whole chunks in place,
/// the last partial one copied). Opening therefore touches nothing; a chunk
/// that fails verification is replaced by fill bytes and reported through
/// `onFailure`, so a search can refuse to return results from it.
///
/// A section whose records are read one at a time from disk (a compact
/// index's vectors) is adopted with a checksum per record instead: its
/// whole chunks are never published, so each access takes the slow path,
/// which checks that record alone, once. A first touch then reads the
/// record's pages, not its chunk's megabytes.
final class NodeArena: @unchecked Sendable {
    // @unchecked: chunk pointers and ownership marks are published and read
    // with atomics; the records follow the graph's own protocol.

    static let chunkShift = 12
    static let chunkSize = 1 << chunkShift
    static let chunkMask = UInt32(chunkSize - 1)
    /// Chunk-table entries: enough for every UInt32 id, so no id can index
    /// past the table (untouched table pages cost no memory).
    static let maxChunks = 1 << (32 - chunkShift)
    static let hugePage = SystemCalls.hugePageSize

    /// Bytes per record.
    let stride: Int
    /// The byte every new record starts filled with.
    let fill: UInt8
    private let table: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Per chunk, who owns its memory (set before publishing): 0 a mapped
    /// segment, ``heapChunk`` allocated here, ``spilledChunk`` a region of
    /// `spill` mapped here, ``segmentChunk`` a segment's records mapped here
    /// copy-on-write in place of a spilled region (``remapWholeChunks(fromSegment:offset:records:)``).
    private let ownedMarks: UnsafeMutablePointer<UInt8>
    private static let heapChunk: UInt8 = 1
    private static let spilledChunk: UInt8 = 2
    private static let segmentChunk: UInt8 = 3
    /// A chunk of one of `slabs`, freed with them.
    private static let slabChunk: UInt8 = 4
    private let slabs = ChunkSlabs()
    /// Where new chunks are mapped instead of allocated (writer only).
    private var spill: SpillFile? = nil
    /// Where each spilled chunk's region starts in `spill` (writer only).
    private var spillOffsets: [Int: Int] = [:]
    private var lastChunkFound = 0
    /// Chunks allocated or adopted so far (changed only by the writer).
    private(set) var chunkCount = 0

    /// A chunk adopted from a mapping and not yet verified.
    struct PendingChunk {
        let source: UnsafeMutableRawPointer
        let records: Int
        let crc: UInt32
    }
    private var pending: [PendingChunk] = []
    /// Checks a verified chunk's records (first id, count); returns a reason
    /// when they are not acceptable.
    private var validate: ((UnsafeRawPointer, UInt32, Int) -> String?)?
    private var onFailure: ((String) -> Void)?
    /// Per chunk, one byte per record: 1 once the record was written since
    /// the segment it came from (``markDirty(_:)``), so a persist can write
    /// only what changed. Allocated with the chunk (zeroed pages cost no
    /// memory until marked).
    private let dirtyMarks: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>
    private let fillChunk = Locked<UnsafeMutableRawPointer?>(nil)
    /// Serialises first accesses, so a chunk is verified and published once.
    private let materializing = Locked<Int>(0)  // not Void: a zero-sized value shares its address with the lock pointer, which ThreadSanitizer then reports
    /// Per-record verification: one UInt32 checksum per adopted record
    /// (itself adopted lazily), for the first `recordChunks` chunks (the
    /// whole ones; a partial last chunk is copied as usual).
    private var recordChecksums: NodeArena? = nil
    private var recordChunks = 0
    /// One byte per record of those chunks: 1 once verified (or reported).
    private var verifiedMarks: UnsafeMutablePointer<UInt8>? = nil

    init(stride: Int, fill: UInt8 = 0) {
        precondition(stride > 0)
        self.stride = stride
        self.fill = fill
        let raw = calloc(NodeArena.maxChunks, MemoryLayout<UnsafeMutableRawPointer?>.stride)!
        table = raw.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: NodeArena.maxChunks)
        ownedMarks = calloc(NodeArena.maxChunks, 1)!.bindMemory(to: UInt8.self, capacity: NodeArena.maxChunks)
        dirtyMarks = calloc(NodeArena.maxChunks, MemoryLayout<UnsafeMutablePointer<UInt8>?>.stride)!
            .bindMemory(to: UnsafeMutablePointer<UInt8>?.self, capacity: NodeArena.maxChunks)
    }

    deinit {
        for c in 0..<chunkCount {
            if ownedMarks[c] == NodeArena.heapChunk { free(table[c]) }
            if ownedMarks[c] == NodeArena.spilledChunk || ownedMarks[c] == NodeArena.segmentChunk {
                SystemCalls.unmap(table[c]!, size: chunkBytes)
            }
        }
        for c in 0..<chunkCount { free(dirtyMarks[c]) }
        free(dirtyMarks)
        fillChunk.withLock { if let p = $0 { free(p) } }
        free(table)
        free(ownedMarks)
        free(verifiedMarks)
    }

    /// Records that fit without allocating.
    var capacity: Int { chunkCount << NodeArena.chunkShift }

    /// Bytes of one chunk.
    var chunkBytes: Int { NodeArena.chunkSize * stride }

    /// Bytes allocated here for records (mapped and spilled chunks not included).
    var allocatedBytes: Int {
        (0..<chunkCount).reduce(0) {
            let owner = lodestone_load_u8(ownedMarks + $1)
            return $0 + (owner == NodeArena.heapChunk || owner == NodeArena.slabChunk ? 1 : 0)
        } * chunkBytes
    }

    /// Bytes of records kept in a spill file (``spillNewChunks(to:)``).
    var spilledBytes: Int {
        (0..<chunkCount).reduce(0) { $0 + (lodestone_load_u8(ownedMarks + $1) == NodeArena.spilledChunk ? 1 : 0) } * chunkBytes
    }

    /// From now on, new chunks are regions of `file` mapped shared rather
    /// than memory (when the disk has room: else memory, as before), so
    /// ``dropSpilledPages()`` can release them. Writer only.
    func spillNewChunks(to file: SpillFile) {
        precondition(chunkBytes % SystemCalls.pageSize == 0, "spilled chunks are whole pages")
        spill = file
    }

    /// Whether some chunks live in a spill file.
    var spillsNewChunks: Bool { spill != nil }

    /// Releases the resident pages of every spilled chunk: readers that
    /// touch them again read them back from the file (or the page cache).
    func dropSpilledPages() {
        guard spill != nil else { return }
        for c in 0..<chunkCount where lodestone_load_u8(ownedMarks + c) == NodeArena.spilledChunk {
            SystemCalls.dropResidentFilePages(table[c]!, size: chunkBytes)
        }
    }

    /// Releases the resident pages of `piece` (bytes of this arena's
    /// records, just written out) where they can come back from a file: a
    /// spilled chunk's at once, a record-verified mapping's by asking the
    /// kernel to reclaim them. Memory of other chunks stays.
    func releasePages(of piece: UnsafeRawBufferPointer) {
        guard let base = piece.baseAddress, piece.count > 0 else { return }
        let owner = spill == nil ? nil : chunkIndex(of: base).map { lodestone_load_u8(ownedMarks + $0) }
        if owner == NodeArena.spilledChunk {
            SystemCalls.dropResidentFilePages(base, size: piece.count)
        } else if owner == NodeArena.segmentChunk {
            SystemCalls.pageOut(base, size: piece.count)  // copy-on-write: changed pages must stay
        } else if recordChunks > 0, base >= UnsafeRawPointer(pending[0].source),
                  base + piece.count <= UnsafeRawPointer(pending[0].source + recordChunks * chunkBytes) {
            SystemCalls.pageOut(base, size: piece.count)
        }
    }

    /// Releases the resident pages of the records `ids` spans where they
    /// live in a spill file.
    func dropSpilledPages(ids: ClosedRange<UInt32>) {
        guard spill != nil else { return }
        let shift = UInt32(NodeArena.chunkShift)
        for c in Int(ids.lowerBound >> shift)...Int(ids.upperBound >> shift)
        where c < chunkCount && lodestone_load_u8(ownedMarks + c) == NodeArena.spilledChunk {
            let first = max(ids.lowerBound, UInt32(c) << shift), last = min(ids.upperBound, UInt32(c + 1) << shift - 1)
            SystemCalls.dropResidentFilePages(record(first), size: Int(last - first + 1) * stride)
        }
    }

    /// The chunk whose memory holds `p`, nil if none. Callers walk chunks
    /// in order, so the last answer and the one after it are tried first.
    private func chunkIndex(of p: UnsafeRawPointer) -> Int? {
        func holds(_ c: Int) -> Bool {
            guard c < chunkCount, let chunk = table[c] else { return false }
            return p >= UnsafeRawPointer(chunk) && p < UnsafeRawPointer(chunk + chunkBytes)
        }
        let found = holds(lastChunkFound) ? lastChunkFound
            : holds(lastChunkFound + 1) ? lastChunkFound + 1 : (0..<chunkCount).first(where: holds)
        if let found { lastChunkFound = found }
        return found
    }

    private static func allocateChunk(stride: Int, fill: UInt8) -> UnsafeMutableRawPointer {
        let bytes = NodeArena.chunkSize * stride
        let p = SystemCalls.allocate(bytes: bytes, alignment: 64, what: "graph records")
        memset(p, Int32(fill), bytes)
        return p
    }

    private func slot(_ c: Int) -> UnsafeMutablePointer<UnsafeMutableRawPointer?> { table + c }

    private func publish(_ chunk: UnsafeMutableRawPointer, owner: UInt8) {
        dirtyMarks[chunkCount] = NodeArena.allocateMarks()
        lodestone_store_u8(ownedMarks + chunkCount, owner)
        lodestone_store_ptr(UnsafeMutableRawPointer(slot(chunkCount)).assumingMemoryBound(to: UnsafeMutableRawPointer?.self), chunk)
        chunkCount += 1
    }

    /// Allocates chunks until ids `0..<n` have records. Writer only.
    func reserve(_ n: Int) {
        precondition(n <= NodeArena.maxChunks << NodeArena.chunkShift, "Lodestone: node arena is full")
        while capacity < n {
            if let spill, let region = spill.mapRegion(bytes: chunkBytes) {
                if fill != 0 { memset(region.pointer, Int32(fill), chunkBytes) }
                spillOffsets[chunkCount] = region.offset
                publish(region.pointer, owner: NodeArena.spilledChunk)
            } else if ChunkSlabs.serves(chunks: chunkCount, bytes: chunkBytes) {
                publish(slabs.take(bytes: chunkBytes, fill: fill), owner: NodeArena.slabChunk)
            } else {
                publish(NodeArena.allocateChunk(stride: stride, fill: fill), owner: NodeArena.heapChunk)
            }
        }
    }

    /// Disk blocks the spill file holds, in bytes (0 without one).
    var spillFileBytes: Int { spill?.allocatedBytes ?? 0 }

    /// Bytes of records mapped from a segment in place of spilled regions.
    var remappedBytes: Int {
        (0..<chunkCount).reduce(0) { $0 + (lodestone_load_u8(ownedMarks + $1) == NodeArena.segmentChunk ? 1 : 0) } * chunkBytes
    }

    /// Once a segment holding records `0..<records` of this arena, laid out
    /// as here from `offset` of the file `fd`, is current: maps each whole
    /// chunk that lives in the spill file (or came from an earlier segment
    /// this way) from that segment instead, copy-on-write, at the same
    /// address, and frees its region of the spill file. The bytes are the
    /// same, so readers notice nothing; the spill file then holds only what
    /// no segment does yet, and an earlier segment's file is let go. Chunks
    /// that cannot be mapped stay as they were. Writer only. Returns the
    /// chunks remapped.
    ///
    /// A record written after this (an update, a reused slot) becomes a
    /// private page of this process, kept in memory until the next persist
    /// maps its chunk again; a persist that renumbers (compacts) maps
    /// nothing, so chunks mapped earlier keep that earlier segment's file
    /// until one that keeps the numbering.
    @discardableResult
    func remapWholeChunks(fromSegment fd: Int32, offset: Int, records: Int) -> Int {
        guard let spill, offset % SystemCalls.pageSize == 0 else { return 0 }
        var remapped = 0
        for c in 0..<min(chunkCount, records >> NodeArena.chunkShift) {
            let owner = lodestone_load_u8(ownedMarks + c)
            guard owner == NodeArena.spilledChunk || owner == NodeArena.segmentChunk,
                  SystemCalls.remapPrivate(fd, offset: offset + c * chunkBytes, at: table[c]!, size: chunkBytes)
            else { continue }
            if owner == NodeArena.spilledChunk, let region = spillOffsets.removeValue(forKey: c) {
                spill.release(offset: region, bytes: chunkBytes)
            }
            lodestone_store_u8(ownedMarks + c, NodeArena.segmentChunk)
            remapped += 1
        }
        return remapped
    }

    /// Adopts `records` records laid out contiguously at `base` (a mapped
    /// section) as ids `0..<records` of this empty arena, one checksum per
    /// chunk; each chunk is verified (checksum, then `validate`) on first use.
    /// With `recordChecksums` (one UInt32 per record), whole chunks are
    /// verified record by record instead, each record on its first access.
    func adoptLazily(_ base: UnsafeMutableRawPointer, records: Int, chunkChecksums: [UInt32],
                     recordChecksums: NodeArena? = nil,
                     validate: ((UnsafeRawPointer, UInt32, Int) -> String?)?, onFailure: @escaping (String) -> Void) {
        precondition(chunkCount == 0)
        precondition(recordChecksums == nil || (validate == nil && recordChecksums!.stride == 4))
        self.validate = validate
        self.onFailure = onFailure
        if let recordChecksums, records >= NodeArena.chunkSize {
            self.recordChecksums = recordChecksums
            recordChunks = records >> NodeArena.chunkShift
            verifiedMarks = calloc(recordChunks << NodeArena.chunkShift, 1)!
                .bindMemory(to: UInt8.self, capacity: recordChunks << NodeArena.chunkShift)
        }
        var start = 0, c = 0
        while start < records {
            let n = min(NodeArena.chunkSize, records - start)
            pending.append(PendingChunk(source: base + start * stride, records: n, crc: chunkChecksums[c]))
            start += n
            c += 1
        }
        for c in 0..<pending.count { dirtyMarks[c] = NodeArena.allocateMarks() }
        chunkCount = pending.count
    }

    private static func allocateMarks() -> UnsafeMutablePointer<UInt8> {
        calloc(NodeArena.chunkSize, 1)!.bindMemory(to: UInt8.self, capacity: NodeArena.chunkSize)
    }

    // MARK: Changes since the segment

    /// Notes that `id`'s record was (or is about to be) written. Safe from
    /// several writing threads at once (each stores the same byte).
    @inline(__always)
    func markDirty(_ id: UInt32) {
        lodestone_store_u8(dirtyMarks[Int(id >> UInt32(NodeArena.chunkShift))]! + Int(id & NodeArena.chunkMask), 1)
    }

    /// The ids below `records` written since the segment (or since
    /// ``clearDirty()``), ascending. Writer only.
    func dirtyIDs(below records: Int) -> [UInt32] {
        var out: [UInt32] = []
        var c = 0
        while c << NodeArena.chunkShift < records, c < chunkCount {
            let marks = dirtyMarks[c]!
            let n = min(NodeArena.chunkSize, records - (c << NodeArena.chunkShift))
            for i in 0..<n where lodestone_load_u8(marks + i) != 0 { out.append(UInt32(c << NodeArena.chunkShift + i)) }
            c += 1
        }
        return out
    }

    /// Forgets every mark (after a persist that wrote every record). Writer only.
    func clearDirty() {
        for c in 0..<chunkCount { memset(dirtyMarks[c]!, 0, NodeArena.chunkSize) }
    }

    /// The record of `id`.
    @inline(__always)
    func record(_ id: UInt32) -> UnsafeMutableRawPointer {
        let c = Int(id >> UInt32(NodeArena.chunkShift))
        let chunk = lodestone_load_ptr(UnsafeRawPointer(slot(c)).assumingMemoryBound(to: UnsafeMutableRawPointer?.self))
        if let chunk { return chunk + Int(id & NodeArena.chunkMask) * stride }
        if c < recordChunks { return verifiedRecord(id) }
        return materialize(c) + Int(id & NodeArena.chunkMask) * stride
    }

    /// Whether records are verified one by one (and so read from the
    /// mapping one at a time).
    var verifiesRecords: Bool { recordChunks > 0 }

    /// Records of the record-verified chunks read (and checked) so far.
    var verifiedRecordCount: Int {
        guard let marks = verifiedMarks else { return 0 }
        return (0..<recordChunks << NodeArena.chunkShift).reduce(0) { $0 + Int(lodestone_load_u8(marks + $1)) }
    }

    /// Asks the kernel to start reading `id`'s record if it lives in a
    /// record-verified chunk (a later access then waits for it rather than
    /// faulting it in alone): finalists are requested together so their
    /// reads overlap.
    func adviseWillNeed(_ id: UInt32) {
        guard Int(id >> UInt32(NodeArena.chunkShift)) < recordChunks else { return }
        SystemCalls.adviseWillNeed(mapped(id), size: stride)
    }

    /// Where `id`'s record lies in the adopted mapping.
    private func mapped(_ id: UInt32) -> UnsafeMutableRawPointer {
        pending[Int(id >> UInt32(NodeArena.chunkShift))].source + Int(id & NodeArena.chunkMask) * stride
    }

    /// Access to a record of a record-verified chunk: its checksum is
    /// checked the first time (outside the lock, like a chunk's); a record
    /// that fails is reported, filled, and counts as checked.
    @inline(never)
    private func verifiedRecord(_ id: UInt32) -> UnsafeMutableRawPointer {
        let record = mapped(id)
        let mark = verifiedMarks! + Int(id)
        if lodestone_load_u8(mark) != 0 { return record }
        let expected = recordChecksums!.record(id).loadUnaligned(as: UInt32.self)
        if lodestone_crc32c(0, record, stride) == UInt32(littleEndian: expected) {
            lodestone_store_u8(mark, 1)
            return record
        }
        materializing.withLock { _ in
            // A writer may have verified and changed it meanwhile.
            guard lodestone_load_u8(mark) == 0 else { return }
            onFailure?("checksum mismatch in record \(id)")
            memset(record, Int32(fill), stride)
            lodestone_store_u8(mark, 1)
        }
        return record
    }

    /// First access to chunk `c`: verify and publish an adopted chunk, or
    /// report an id beyond the arena (a corrupt link) and hand out fill bytes.
    /// The checksum and content are checked outside the lock (threads
    /// meeting different chunks verify them in parallel; two meeting the
    /// same one may both verify it, and the first to publish wins).
    @inline(never)
    private func materialize(_ c: Int) -> UnsafeMutableRawPointer {
        let target = UnsafeMutableRawPointer(slot(c)).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        func published() -> UnsafeMutableRawPointer? {
            lodestone_load_ptr(UnsafeRawPointer(target).assumingMemoryBound(to: UnsafeMutableRawPointer?.self))
        }
        var problem: String? = nil
        if c < pending.count, published() == nil {
            let p = pending[c]
            if lodestone_crc32c(0, p.source, p.records * stride) != p.crc {
                problem = "checksum mismatch in records \(c << NodeArena.chunkShift)..<\((c << NodeArena.chunkShift) + p.records)"
            } else if let validate, let reason = validate(p.source, UInt32(c << NodeArena.chunkShift), p.records) {
                problem = reason
            }
        }
        return materializing.withLock { _ in
            // Another thread may have published it meanwhile (and a writer
            // may have changed it since: what was verified here no longer counts).
            if let chunk = published() { return chunk }
            guard c < pending.count else {
                onFailure?("record chunk \(c) is beyond the \(pending.count) chunks stored (a link points past the end)")
                return fillBytes()
            }
            let p = pending[c]
            let chunk: UnsafeMutableRawPointer
            if let problem {
                onFailure?(problem)
                chunk = NodeArena.allocateChunk(stride: stride, fill: fill)
                lodestone_store_u8(ownedMarks + c, NodeArena.heapChunk)
            } else if p.records == NodeArena.chunkSize {
                chunk = p.source
            } else {
                chunk = NodeArena.allocateChunk(stride: stride, fill: fill)
                chunk.copyMemory(from: p.source, byteCount: p.records * stride)
                lodestone_store_u8(ownedMarks + c, NodeArena.heapChunk)
            }
            lodestone_store_ptr(target, chunk)
            return chunk
        }
    }

    /// A chunk of fill bytes handed out for ids that have no valid records.
    private func fillBytes() -> UnsafeMutableRawPointer {
        fillChunk.withLock { p in
            if let p { return p }
            let chunk = NodeArena.allocateChunk(stride: stride, fill: fill)
            p = chunk
            return chunk
        }
    }

    /// Verifies every adopted chunk now (what a first access would do), on
    /// `threads` threads.
    func verifyAll(threads: Int = 1) {
        parallelFor(count: pending.count, threads: threads) { run in
            for c in run { _ = span(UInt32(c << NodeArena.chunkShift), count: pending[c].records) }
        }
    }

    /// The bytes of records `start..<start + count` (one chunk's), each
    /// verified as reading it would: what a persist copies out under fresh
    /// checksums. A record-verified span is read ahead first (its mapping
    /// is advised for random access, which reads no more than it is asked).
    func span(_ start: UInt32, count: Int) -> UnsafeRawBufferPointer {
        precondition(count > 0 && Int(start & NodeArena.chunkMask) + count <= NodeArena.chunkSize)
        if Int(start >> UInt32(NodeArena.chunkShift)) < recordChunks {
            SystemCalls.adviseWillNeed(mapped(start), size: count * stride)
            for i in 1..<count { _ = record(start + UInt32(i)) }
        }
        return UnsafeRawBufferPointer(start: record(start), count: count * stride)
    }

    /// The bytes of records `0..<records`, one range per chunk, for writing.
    func byteRanges(records: Int) -> [UnsafeRawBufferPointer] {
        NodeArena.chunkRuns(records: records).map { span($0.start, count: $0.count) }
    }

    /// Records `0..<records` as runs within one chunk each.
    static func chunkRuns(records: Int) -> [(start: UInt32, count: Int)] {
        Swift.stride(from: 0, to: records, by: chunkSize).map { (UInt32($0), min(chunkSize, records - $0)) }
    }
}
