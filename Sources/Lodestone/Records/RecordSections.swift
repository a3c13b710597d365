/// The record table in a segment, used in place from the mapping: opening an
/// `Index` reads a small header and checks the slot table's bounds; ids are
/// found through a persisted hash table, and metadata is decoded only for
/// the records (and, for filters, the fields) that are asked for.
///
/// Sections (FORMAT.md): `records.header` (namespaces, counts, the vector
/// fingerprint), `records.slots` (24 bytes per slot: namespace number or
/// 0xFFFFFFFF for a free slot, id length, offset of the id in the blob,
/// metadata length, the vector's norm before cosine normalisation as a
/// float32, 0 when not recorded), `records.hash` (open-addressing buckets of
/// slot + 1, 0 = empty, over FNV-1a of namespace number and id) and
/// `records.blob` (each record's id bytes followed by its binary metadata).
enum RecordSections {
    static let slotStride = 24
    static let freeNamespace = UInt32.max

    /// FNV-1a over the namespace number (4 bytes, little-endian) and the id.
    @inline(__always)
    static func hash(namespace: UInt32, id: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<4 {
            h ^= UInt64((namespace >> (8 * UInt32(i))) & 0xFF)
            h = h &* 0x0000_0100_0000_01B3
        }
        for b in id {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }

    /// The sections for a table of `capacity` slots; `record(slot)` gives
    /// each slot in use's namespace number, id and metadata.
    static func sections(namespaces: [String], capacity: Int, count: Int, namespaceCounts: [Int],
                         fingerprint: VectorFingerprint,
                         record: (UInt32) -> (namespace: UInt32, id: String, metadata: Metadata, norm: Float)?,
                         sparse: (UInt32) -> SparseVector?)
        -> [PendingSection]
    {
        var slots = ByteWriter()
        var blob = ByteWriter()
        var hashes: [(UInt64, UInt32)] = []
        hashes.reserveCapacity(count)
        for s in 0..<UInt32(capacity) {
            guard let r = record(s) else {
                slots.u32(freeNamespace)
                slots.zeros(20)
                continue
            }
            let idBytes = Array(r.id.utf8)
            let offset = blob.bytes.count
            blob.raw(idBytes)
            var m = ByteWriter()
            MetadataCodec.encode(r.metadata, into: &m)
            blob.raw(m.bytes)
            slots.u32(r.namespace)
            slots.u32(UInt32(idBytes.count))
            slots.u64(UInt64(offset))
            slots.u32(UInt32(m.bytes.count))
            slots.u32(r.norm.bitPattern)
            let h = idBytes.withUnsafeBytes { hash(namespace: r.namespace, id: $0) }
            hashes.append((h, s))
        }
        var bucketCount = 16
        while bucketCount < count * 2 { bucketCount *= 2 }
        var buckets = [UInt32](repeating: 0, count: bucketCount)
        let mask = bucketCount - 1
        for (h, s) in hashes {
            var i = Int(truncatingIfNeeded: h) & mask
            while buckets[i] != 0 { i = (i + 1) & mask }
            buckets[i] = s + 1
        }
        let sparseSections = SparseSections.sections(capacity: capacity, vector: sparse)
        var header = ByteWriter()
        // Layout 3 says the sparse sections are there: a reader that
        // predates them refuses the file instead of dropping them.
        header.u32(sparseSections.isEmpty ? 2 : 3)  // layout version
        header.u32(UInt32(namespaces.count))
        for (name, n) in zip(namespaces, namespaceCounts) {
            let b = Array(name.utf8)
            header.u32(UInt32(b.count))
            header.raw(b)
            header.u64(UInt64(n))
        }
        header.u64(UInt64(capacity))
        header.u64(UInt64(count))
        fingerprint.encode(into: &header)
        return [
            PendingSection(kind: SectionKind.recordsHeader, codec: .lz4, owned: header.bytes),
            PendingSection(kind: SectionKind.recordsSlots, stride: slotStride, count: capacity, owned: slots.bytes),
            PendingSection(kind: SectionKind.recordsHash, stride: 4, count: bucketCount, owned: buckets),
            PendingSection(kind: SectionKind.recordsBlob, stride: 1, count: blob.bytes.count, owned: blob.bytes),
        ] + sparseSections
    }
}

/// Where a ``MetadataIndex`` finds the records it was not given one by one
/// (a persisted table, read in place).
protocol MetadataSource: AnyObject {
    /// Slots covered.
    var slotCount: Int { get }
    /// Whether `slot` holds a record.
    func isInUse(_ slot: Int) -> Bool
    /// The record's whole metadata.
    func metadata(slot: Int) -> Metadata?
    /// One field of the record's metadata (decoding nothing else).
    func value(slot: Int, field: [UInt8]) -> MetadataValue?
}

/// The record table of an opened segment, read in place (see
/// ``RecordSections``). Immutable; an ``RecordTable`` layers changes on top.
final class RecordBase: MetadataSource, @unchecked Sendable {
    // @unchecked: immutable after init; the mapping outlives it (`segment`).
    let segment: MappedSegment
    let namespaces: [String]
    let namespaceCounts: [Int]
    let slotCount: Int
    let recordCount: Int
    let fingerprint: VectorFingerprint
    /// The records' sparse vectors (nil when the segment holds none).
    let sparse: SparseBase?
    private let slots: UnsafeRawPointer
    private let buckets: UnsafePointer<UInt32>
    private let bucketMask: Int
    private let blob: UnsafeRawBufferPointer

    /// Reads and checks the record sections of `segment`: the header, then
    /// that every slot's id and metadata lie inside the blob, namespace
    /// numbers are known, and hash buckets name valid slots.
    init(segment: MappedSegment, dimension: Int) throws(LodestoneError) {
        self.segment = segment
        let path = segment.path
        func corrupt(_ section: String, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: section, reason: reason)
        }
        let headerBytes = try segment.bytes(SectionKind.recordsHeader)
        var r = ByteReader(headerBytes) { corrupt("records.header", "truncated") }
        let layout = try r.u32()
        guard layout == 2 || layout == 3 else { throw corrupt("records.header", "unknown layout version \(layout)") }
        let n = Int(try r.u32())
        guard n <= headerBytes.count else { throw corrupt("records.header", "\(n) namespaces") }
        var names: [String] = [], counts: [Int] = []
        for _ in 0..<n {
            names.append(try r.lengthPrefixedString())
            counts.append(Int(try r.u64() & 0xFFFF_FFFF))
        }
        guard Set(names).count == names.count else { throw corrupt("records.header", "a namespace is listed twice") }
        let capacity = try r.u64(), records = try r.u64()
        guard capacity < 1 << 32, records <= capacity, counts.reduce(0, +) == Int(records) else {
            throw corrupt("records.header", "\(records) records in \(capacity) slots, namespace counts \(counts)")
        }
        do throws(LodestoneError) {
            fingerprint = try VectorFingerprint.decode(&r, dimension: dimension)
        } catch {
            throw corrupt("records.header", "fingerprint: \(error)")
        }
        namespaces = names
        namespaceCounts = counts
        slotCount = Int(capacity)
        recordCount = Int(records)
        sparse = layout == 3 ? try SparseBase(segment: segment, slotCount: Int(capacity)) : nil
        slots = UnsafeRawPointer(try segment.records(SectionKind.recordsSlots, stride: RecordSections.slotStride,
                                                     count: slotCount))
        let blobEntry = try segment.entry(SectionKind.recordsBlob)
        guard blobEntry.codec == .raw else { throw corrupt("records.blob", "not raw") }
        blob = UnsafeRawBufferPointer(start: segment.base + blobEntry.offset, count: blobEntry.rawLength)
        let hashEntry = try segment.entry(SectionKind.recordsHash)
        let bucketCount = hashEntry.count
        guard bucketCount >= 16, bucketCount & (bucketCount - 1) == 0, bucketCount >= 2 * recordCount,
              hashEntry.stride == 4 else {
            throw corrupt("records.hash", "\(bucketCount) buckets for \(recordCount) records")
        }
        buckets = UnsafeRawPointer(try segment.records(SectionKind.recordsHash, stride: 4, count: bucketCount))
            .assumingMemoryBound(to: UInt32.self)
        bucketMask = bucketCount - 1
        var used = 0
        for s in 0..<slotCount {
            let e = slots + s * RecordSections.slotStride
            let ns = e.loadUnaligned(as: UInt32.self)
            if ns == RecordSections.freeNamespace { continue }
            let idLength = Int(e.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            let offset = e.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let metaLength = Int(e.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            guard Int(ns) < n, idLength >= 1, idLength <= RecordTable.maximumIDBytes, offset <= UInt64(blob.count),
                  UInt64(idLength + metaLength) <= UInt64(blob.count) - offset else {
                throw corrupt("records.slots", "slot \(s) (namespace \(ns), \(idLength)+\(metaLength) bytes at \(offset)) "
                              + "is out of range")
            }
            used += 1
        }
        guard used == recordCount else { throw corrupt("records.slots", "\(used) slots in use, header says \(recordCount)") }
        var filled = 0
        for i in 0..<bucketCount where buckets[i] != 0 {
            guard Int(buckets[i]) <= slotCount, isInUse(Int(buckets[i]) - 1) else {
                throw corrupt("records.hash", "bucket \(i) names slot \(Int(buckets[i]) - 1), which holds no record")
            }
            filled += 1
        }
        guard filled == recordCount else { throw corrupt("records.hash", "\(filled) buckets for \(recordCount) records") }
        if let sparse {
            for s in 0..<slotCount where sparse.vector(slot: s) != nil && !isInUse(s) {
                throw corrupt("sparse.offsets", "slot \(s) holds a sparse vector but no record")
            }
        }
    }

    @inline(__always) private func entry(_ slot: Int) -> UnsafeRawPointer { slots + slot * RecordSections.slotStride }

    func isInUse(_ slot: Int) -> Bool {
        slot < slotCount && entry(slot).loadUnaligned(as: UInt32.self) != RecordSections.freeNamespace
    }

    /// The norm recorded for a slot in use (0: none; see ``RecordTable/norm(ofSlot:)``).
    func norm(ofSlot slot: Int) -> Float {
        let n = Float(bitPattern: entry(slot).loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        return n.isFinite && n > 0 ? n : 0
    }

    /// The namespace number of a slot in use.
    func namespace(ofSlot slot: Int) -> UInt32 { entry(slot).loadUnaligned(as: UInt32.self) }

    private func idBytes(_ slot: Int) -> UnsafeRawBufferPointer {
        let e = entry(slot)
        let offset = Int(e.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return UnsafeRawBufferPointer(rebasing: blob[offset..<(offset + Int(e.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))])
    }

    private func metadataBytes(_ slot: Int) -> UnsafeRawBufferPointer {
        let e = entry(slot)
        let start = Int(e.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) + Int(e.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        return UnsafeRawBufferPointer(rebasing: blob[start..<(start + Int(e.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))])
    }

    /// The id of a slot in use, or nil.
    func id(ofSlot slot: Int) -> String? {
        guard isInUse(slot) else { return nil }
        return String(decoding: idBytes(slot), as: UTF8.self)
    }

    /// The slot of `id` in namespace number `ns`.
    func slot(id: String, namespace ns: UInt32) -> UInt32? {
        var key = id
        return key.withUTF8 { idBuffer -> UInt32? in
            let raw = UnsafeRawBufferPointer(idBuffer)
            var i = Int(truncatingIfNeeded: RecordSections.hash(namespace: ns, id: raw)) & bucketMask
            while true {
                let b = buckets[i]
                if b == 0 { return nil }
                let s = Int(b) - 1
                if namespace(ofSlot: s) == ns {
                    let stored = idBytes(s)
                    if stored.count == raw.count && (raw.count == 0 || memcmp(stored.baseAddress!, raw.baseAddress!, raw.count) == 0) {
                        return UInt32(s)
                    }
                }
                i = (i + 1) & bucketMask
            }
        }
    }

    func metadata(slot: Int) -> Metadata? {
        guard isInUse(slot) else { return nil }
        var r = RawReader(metadataBytes(slot))
        return try? MetadataCodec.decode(&r)
    }

    func value(slot: Int, field: [UInt8]) -> MetadataValue? {
        guard isInUse(slot) else { return nil }
        var r = RawReader(metadataBytes(slot))
        return try? MetadataCodec.value(of: field, in: &r)
    }
}

/// Bounds-checked little-endian reads from memory (no copy).
struct RawReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private static let short = LodestoneError.invalidMetadata(field: "", reason: "stored metadata is truncated")

    mutating func u8() throws(LodestoneError) -> UInt8 {
        guard position < bytes.count else { throw Self.short }
        defer { position += 1 }
        return bytes[position]
    }
    mutating func u32() throws(LodestoneError) -> UInt32 {
        guard bytes.count - position >= 4 else { throw Self.short }
        defer { position += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }
    mutating func u64() throws(LodestoneError) -> UInt64 {
        guard bytes.count - position >= 8 else { throw Self.short }
        defer { position += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self))
    }
    /// The next `n` bytes, in place.
    mutating func take(_ n: Int) throws(LodestoneError) -> UnsafeRawBufferPointer {
        guard n >= 0, bytes.count - position >= n else { throw Self.short }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
