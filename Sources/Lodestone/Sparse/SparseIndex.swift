import CLodestoneKernels

/// One component of a sparse vector (term id and value) or one posting of
/// a term (slot and value): the 8-byte entry of the sparse sections.
struct SparseEntry: SectionElement {
    var key: UInt32
    var value: Float
}

/// A term's postings held in memory: ascending by slot, in memory the
/// list owns (a search reads it through a stable pointer under the read
/// lock), with bounds on its values for pruning.
final class PostingBuffer {
    private(set) var entries: UnsafeMutablePointer<SparseEntry>
    private(set) var count = 0
    private var capacity: Int
    /// Bounds on every value the list has held (removals leave them: still
    /// bounds).
    private(set) var maxValue: Float = -.infinity
    private(set) var minValue: Float = .infinity

    init(copying source: UnsafeBufferPointer<SparseEntry>, maxValue: Float, minValue: Float) {
        capacity = max(4, source.count + source.count / 4)
        entries = .allocate(capacity: capacity)
        if let b = source.baseAddress { entries.initialize(from: b, count: source.count) }
        count = source.count
        self.maxValue = maxValue
        self.minValue = minValue
    }

    deinit { entries.deallocate() }

    var buffer: UnsafeBufferPointer<SparseEntry> { UnsafeBufferPointer(start: entries, count: count) }

    /// The first position whose slot is not below `slot`.
    private func lowerBound(_ slot: UInt32) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if entries[mid].key < slot { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Adds (or replaces) `slot`'s posting, keeping slot order.
    func insert(slot: UInt32, value: Float) {
        maxValue = max(maxValue, value)
        minValue = min(minValue, value)
        let at = count > 0 && entries[count - 1].key < slot ? count : lowerBound(slot)
        if at < count && entries[at].key == slot {
            entries[at].value = value
            return
        }
        if count == capacity {
            let grown = UnsafeMutablePointer<SparseEntry>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: entries, count: count)
            entries.deallocate()
            entries = grown
            capacity *= 2
        }
        if at < count { (entries + at + 1).moveInitialize(from: entries + at, count: count - at) }
        (entries + at).initialize(to: SparseEntry(key: slot, value: value))
        count += 1
    }

    /// Drops `slot`'s posting, if any.
    func remove(slot: UInt32) {
        let at = lowerBound(slot)
        guard at < count, entries[at].key == slot else { return }
        if at + 1 < count { (entries + at).moveInitialize(from: entries + at + 1, count: count - at - 1) }
        count -= 1
    }
}

/// The sparse vectors of an ``Index``'s records and their inverted index:
/// per term, the slots holding it with their values, ascending by slot.
///
/// An opened index's are its segment's (a ``SparseBase``, read in place)
/// with the changes since layered on top: a slot changed since open has its
/// vector here, and every term such a change touched is copied into memory
/// (a ``PostingBuffer``) and edited there, so a term's postings are either
/// entirely the segment's or entirely in memory.
///
/// Not thread-safe: its owner (the record table) serialises writers and
/// readers; searches share it under the read lock.
final class SparseIndex {
    private let base: SparseBase?
    /// Per slot changed since open, where its components start in `arena`
    /// (high 48 bits) and how many (low 16); ``unchanged`` for the others.
    private var overlay: [UInt64] = []
    private static let unchanged = UInt64.max
    /// The changed slots' components, appended (a slot set again leaves
    /// its old ones behind until ``compactArena()``).
    private var arena = EntryBuffer()
    private var arenaLive = 0
    /// Terms whose postings live in memory.
    private var lists: [UInt32: PostingBuffer] = [:]
    /// Records holding a nonempty sparse vector.
    private(set) var count: Int
    /// Whether a value below zero may be stored (then pruning is off: a
    /// partial score is no lower bound).
    private(set) var mayHoldNegative: Bool
    /// Reused per-query memory.
    let scratchPool = Locked<[SparseScratch]>([])

    init(base: SparseBase?) {
        self.base = base
        count = base?.recordCount ?? 0
        mayHoldNegative = base?.mayHoldNegative ?? false
    }

    /// The components of `slot`'s vector, ascending by term (nil when it
    /// has none); valid until the next change.
    @inline(__always)
    func components(slot: UInt32) -> UnsafeBufferPointer<SparseEntry>? {
        overlay.withUnsafeBufferPointer { Self.components(slot: slot, overlay: $0, arena: arena.entries, base: base) }
    }

    /// `components(slot:)` with the index's parts read once by the caller
    /// (a loop over many slots).
    @inline(__always)
    private static func components(slot: UInt32, overlay: UnsafeBufferPointer<UInt64>,
                                   arena: UnsafeMutablePointer<SparseEntry>, base: SparseBase?)
        -> UnsafeBufferPointer<SparseEntry>?
    {
        let s = Int(slot)
        if s < overlay.count, overlay[s] != Self.unchanged {
            let n = Int(overlay[s] & 0xFFFF)
            return n == 0 ? nil : UnsafeBufferPointer(start: arena + Int(overlay[s] >> 16), count: n)
        }
        return base?.vector(slot: s)
    }

    /// The vector of `slot` (nil when it has none).
    func vector(slot: UInt32) -> SparseVector? {
        guard let c = components(slot: slot) else { return nil }
        return SparseVector(indices: c.map(\.key), values: c.map(\.value))
    }

    /// The dot products of `slots`' vectors with a query's terms, 0 for a
    /// slot without one. Each slot is two likely cache misses (where its
    /// components are, then them), requested that many slots ahead.
    func dots(slots: [UInt32], _ query: QueryTermTable) -> [Float] {
        let n = slots.count
        guard n > 0 else { return [] }
        let arena = arena.entries, base = base
        return overlay.withUnsafeBufferPointer { overlay in
            query.withDot { dot in
                [Float](unsafeUninitializedCapacity: n) { out, count in
                    func components(_ i: Int) -> UnsafeBufferPointer<SparseEntry>? {
                        Self.components(slot: slots[i], overlay: overlay, arena: arena, base: base)
                    }
                    // Step i requests slot i's locator, slot i - 8's
                    // components, and scores slot i - 16.
                    let far = 16, near = 8
                    for i in 0..<(n + far) {
                        if i < n {
                            let s = Int(slots[i])
                            if s < overlay.count { lodestone_prefetch(overlay.baseAddress! + s) } else if let p = base?.locator(slot: s) {
                                lodestone_prefetch(p)
                            }
                        }
                        let fetching = i - (far - near), scoring = i - far
                        if fetching >= 0 && fetching < n, let c = components(fetching) {
                            lodestone_prefetch_bytes(c.baseAddress!, c.count * 8)
                        }
                        if scoring >= 0 { out[scoring] = components(scoring).map(dot) ?? 0 }
                    }
                    count = n
                }
            }
        }
    }

    /// Stores `vector` (validated, ascending; nil or empty: none) as
    /// `slot`'s, replacing what it had.
    func set(_ vector: SparseVector?, slot: UInt32) {
        if let old = components(slot: slot) {
            for e in old { materialize(e.key).remove(slot: slot) }
            count -= 1
            if Int(slot) < overlay.count && overlay[Int(slot)] != Self.unchanged { arenaLive -= old.count }
        }
        let s = Int(slot)
        if s >= overlay.count {
            overlay.append(contentsOf: repeatElement(Self.unchanged, count: max(s + 1, overlay.count * 2) - overlay.count))
        }
        let new = vector ?? SparseVector(indices: [], values: [])
        let start = arena.count
        for (t, v) in zip(new.indices, new.values) { arena.append(SparseEntry(key: t, value: v)) }
        overlay[s] = UInt64(start) << 16 | UInt64(new.indices.count)
        arenaLive += new.indices.count
        if arena.count > 1 << 20 && arenaLive < arena.count / 2 { compactArena() }
        guard !new.isEmpty else { return }
        for (t, v) in zip(new.indices, new.values) {
            materialize(t).insert(slot: slot, value: v)
            if v < 0 { mayHoldNegative = true }
        }
        count += 1
    }

    /// Rewrites the arena with the live components only.
    private func compactArena() {
        var fresh = EntryBuffer()
        for s in overlay.indices where overlay[s] != Self.unchanged {
            let n = Int(overlay[s] & 0xFFFF), start = Int(overlay[s] >> 16)
            let at = fresh.count
            for i in 0..<n { fresh.append(arena.entries[start + i]) }
            overlay[s] = UInt64(at) << 16 | UInt64(n)
        }
        arena = fresh
    }

    /// The in-memory postings of `term`, copied from the segment on first use.
    private func materialize(_ term: UInt32) -> PostingBuffer {
        if let list = lists[term] { return list }
        let list: PostingBuffer
        if let base, let stored = base.postings(term: term) {
            list = PostingBuffer(copying: stored.entries, maxValue: stored.maxValue, minValue: stored.minValue)
        } else {
            list = PostingBuffer(copying: UnsafeBufferPointer(start: nil, count: 0), maxValue: -.infinity,
                                 minValue: .infinity)
        }
        lists[term] = list
        return list
    }

    /// The postings of `term` and bounds on their values; the buffer stays
    /// valid until the next change (callers hold the read lock).
    func postings(term: UInt32) -> (entries: UnsafeBufferPointer<SparseEntry>, maxValue: Float, minValue: Float)? {
        if let list = lists[term] {
            return list.count == 0 ? nil : (list.buffer, list.maxValue, list.minValue)
        }
        return base?.postings(term: term)
    }
}

/// A growing run of entries in memory it owns, read through a stable
/// pointer between changes.
struct EntryBuffer {
    private final class Storage {
        var entries: UnsafeMutablePointer<SparseEntry>
        var capacity: Int
        init(capacity: Int) {
            self.capacity = capacity
            entries = .allocate(capacity: capacity)
        }
        deinit { entries.deallocate() }
    }
    private var storage = Storage(capacity: 1_024)
    private(set) var count = 0

    var entries: UnsafeMutablePointer<SparseEntry> { storage.entries }

    mutating func append(_ e: SparseEntry) {
        if count == storage.capacity {
            let grown = Storage(capacity: storage.capacity * 2)
            grown.entries.moveInitialize(from: storage.entries, count: count)
            storage = grown
        }
        (storage.entries + count).initialize(to: e)
        count += 1
    }
}
