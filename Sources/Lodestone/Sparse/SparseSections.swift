/// The sparse vectors of an `Index`'s records in a segment (FORMAT.md,
/// "Sparse vectors"): per slot its components (`sparse.offsets`,
/// `sparse.vectors`), and per term its postings (`sparse.terms`,
/// `sparse.postings`), so a reopened index searches them in place.
enum SparseSections {
    /// Bytes per `sparse.terms` entry: UInt32 term, Float32 largest and
    /// smallest value, UInt32 zero, UInt64 first posting.
    static let termStride = 24

    /// The sections for a table of `capacity` slots, or none when no slot
    /// holds a sparse vector; `vector(slot)` gives each slot's (ascending).
    static func sections(capacity: Int, vector: (UInt32) -> SparseVector?) -> [PendingSection] {
        var offsets: [UInt64] = [0]
        offsets.reserveCapacity(capacity + 1)
        var entries: [SparseEntry] = []
        var byTerm: [UInt32: [SparseEntry]] = [:]
        var records = 0
        for s in 0..<UInt32(capacity) {
            if let v = vector(s), !v.isEmpty {
                records += 1
                for (t, value) in zip(v.indices, v.values) {
                    entries.append(SparseEntry(key: t, value: value))
                    byTerm[t, default: []].append(SparseEntry(key: s, value: value))
                }
            }
            offsets.append(UInt64(entries.count))
        }
        guard records > 0 else { return [] }
        var terms = ByteWriter()
        var postings: [SparseEntry] = []
        postings.reserveCapacity(entries.count)
        for t in byTerm.keys.sorted() {
            let list = byTerm[t]!
            terms.u32(t)
            terms.u32(list.map(\.value).max()!.bitPattern)
            terms.u32(list.map(\.value).min()!.bitPattern)
            terms.u32(0)
            terms.u64(UInt64(postings.count))
            postings += list
        }
        // The sentinel: where the last term's postings end.
        terms.u32(UInt32.max)
        terms.zeros(12)
        terms.u64(UInt64(postings.count))
        return [
            PendingSection(kind: SectionKind.sparseOffsets, stride: 8, count: offsets.count, owned: offsets),
            PendingSection(kind: SectionKind.sparseVectors, stride: 8, count: entries.count, owned: entries),
            PendingSection(kind: SectionKind.sparseTerms, stride: termStride, count: byTerm.count + 1, owned: terms.bytes),
            PendingSection(kind: SectionKind.sparsePostings, stride: 8, count: postings.count, owned: postings),
        ]
    }
}

/// The sparse sections of an opened segment, read in place. Immutable; a
/// ``SparseIndex`` layers changes on top.
final class SparseBase: @unchecked Sendable {
    // @unchecked: immutable after init; the mapping outlives it (`segment`).
    let segment: MappedSegment
    let slotCount: Int
    /// Slots holding a nonempty vector.
    let recordCount: Int
    let mayHoldNegative: Bool
    private let offsets: UnsafePointer<UInt64>
    private let vectors: UnsafePointer<SparseEntry>
    private let terms: UnsafeRawPointer
    private let termCount: Int
    private let postings: UnsafePointer<SparseEntry>

    /// Reads and checks the sparse sections of `segment` for a table of
    /// `slotCount` slots: offsets ascending within the vectors, each
    /// vector's indices ascending, terms ascending with their postings in
    /// bounds and ascending by slot, every posting's slot below `slotCount`.
    init(segment: MappedSegment, slotCount: Int) throws(LodestoneError) {
        self.segment = segment
        self.slotCount = slotCount
        let path = segment.path
        func corrupt(_ section: UInt32, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: SectionKind.name(section), reason: reason)
        }
        offsets = UnsafeRawPointer(try segment.records(SectionKind.sparseOffsets, stride: 8, count: slotCount + 1))
            .assumingMemoryBound(to: UInt64.self)
        let vectorCount = try segment.entry(SectionKind.sparseVectors).count
        vectors = UnsafeRawPointer(try segment.records(SectionKind.sparseVectors, stride: 8, count: vectorCount))
            .assumingMemoryBound(to: SparseEntry.self)
        let termEntries = try segment.entry(SectionKind.sparseTerms).count
        guard termEntries >= 1 else { throw corrupt(SectionKind.sparseTerms, "no sentinel entry") }
        terms = UnsafeRawPointer(try segment.records(SectionKind.sparseTerms, stride: SparseSections.termStride,
                                                     count: termEntries))
        termCount = termEntries - 1
        let postingCount = try segment.entry(SectionKind.sparsePostings).count
        postings = UnsafeRawPointer(try segment.records(SectionKind.sparsePostings, stride: 8, count: postingCount))
            .assumingMemoryBound(to: SparseEntry.self)
        guard postingCount == vectorCount else {
            throw corrupt(SectionKind.sparsePostings, "\(postingCount) postings for \(vectorCount) components")
        }
        guard offsets[0] == 0, offsets[slotCount] == UInt64(vectorCount) else {
            throw corrupt(SectionKind.sparseOffsets, "offsets do not span the \(vectorCount) components")
        }
        var records = 0
        var negative = false
        for s in 0..<slotCount {
            let start = offsets[s], end = offsets[s + 1]
            guard start <= end else { throw corrupt(SectionKind.sparseOffsets, "slot \(s)'s offsets descend") }
            if end > start { records += 1 }
            var i = Int(start) + 1
            while i < Int(end) {
                guard vectors[i - 1].key < vectors[i].key else {
                    throw corrupt(SectionKind.sparseVectors, "slot \(s)'s indices are not ascending")
                }
                i += 1
            }
        }
        var previousStart: UInt64 = 0
        for i in 0...termCount {
            let e = terms + i * SparseSections.termStride
            let start = e.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            guard start >= previousStart, start <= UInt64(postingCount) else {
                throw corrupt(SectionKind.sparseTerms, "term entry \(i) starts at posting \(start)")
            }
            if i > 0 {
                let previous = (e - SparseSections.termStride).loadUnaligned(as: UInt32.self)
                guard i == termCount || previous < e.loadUnaligned(as: UInt32.self) else {
                    throw corrupt(SectionKind.sparseTerms, "terms are not ascending at entry \(i)")
                }
                var p = Int(previousStart) + 1
                while p < Int(start) {
                    guard postings[p - 1].key < postings[p].key else {
                        throw corrupt(SectionKind.sparsePostings, "term \(previous)'s slots are not ascending")
                    }
                    p += 1
                }
            }
            if i < termCount && Float(bitPattern: e.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) < 0 {
                negative = true
            }
            previousStart = start
        }
        guard previousStart == UInt64(postingCount) else {
            throw corrupt(SectionKind.sparseTerms, "the sentinel ends at \(previousStart) of \(postingCount) postings")
        }
        for p in 0..<postingCount where Int(postings[p].key) >= slotCount {
            throw corrupt(SectionKind.sparsePostings, "posting \(p) names slot \(postings[p].key) of \(slotCount)")
        }
        recordCount = records
        mayHoldNegative = negative
    }

    /// Where `slot`'s component range is recorded (for a prefetch).
    func locator(slot: Int) -> UnsafeRawPointer? { slot < slotCount ? UnsafeRawPointer(offsets + slot) : nil }

    /// The components of `slot`'s vector (nil when it has none).
    func vector(slot: Int) -> UnsafeBufferPointer<SparseEntry>? {
        guard slot < slotCount else { return nil }
        let start = Int(offsets[slot]), end = Int(offsets[slot + 1])
        return end > start ? UnsafeBufferPointer(start: vectors + start, count: end - start) : nil
    }

    /// The postings of `term` and bounds on their values (nil when no slot
    /// holds it).
    func postings(term: UInt32) -> (entries: UnsafeBufferPointer<SparseEntry>, maxValue: Float, minValue: Float)? {
        var lo = 0, hi = termCount
        while lo < hi {
            let mid = (lo + hi) >> 1
            if (terms + mid * SparseSections.termStride).loadUnaligned(as: UInt32.self) < term { lo = mid + 1 } else { hi = mid }
        }
        guard lo < termCount else { return nil }
        let e = terms + lo * SparseSections.termStride
        guard e.loadUnaligned(as: UInt32.self) == term else { return nil }
        let start = Int(e.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let end = Int((e + SparseSections.termStride).loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        return (UnsafeBufferPointer(start: postings + start, count: end - start),
                Float(bitPattern: e.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                Float(bitPattern: e.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
    }
}
