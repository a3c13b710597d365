/// The records of an ``Index`` other than their vectors: for every slot in
/// use, the record's namespace, string id and metadata (indexed by a
/// ``MetadataIndex``). A record's slot is also its key in the vector index,
/// so slots are dense and reused once freed, and a filter's matching slots
/// are directly the keys a search may return.
///
/// An opened index's table is its segment's (a ``RecordBase``, read in
/// place: nothing is decoded at open) with the changes since layered on
/// top, as the vector index layers its changes over the mapped segment.
///
/// Not thread-safe: its owner serialises writers and readers.
final class RecordTable {
    private let base: RecordBase?
    /// Slots changed since open: the new record, or nil once cleared.
    private var changed: [UInt32: Entry?] = [:]
    /// Ids changed since open, per namespace number: the slot, or nil once deleted.
    private var changedIDs: [[String: UInt32?]] = []
    private(set) var namespaceNames: [String] = []
    private var namespaceNumbers: [String: UInt32] = [:]
    private var namespaceCounts: [Int] = []
    private var freeSlots: [UInt32] = []
    /// Slots set, cleared or given new metadata since the segment on disk
    /// was written (what a delta must carry); emptied by ``segmentWritten()``.
    private var touchedSinceSegment: Set<UInt32> = []
    private(set) var capacity = 0
    private(set) var count = 0
    let metadata: MetadataIndex
    /// The records' sparse vectors and their inverted index.
    let sparse: SparseIndex
    /// Bumped by every change (cached filter results check it).
    private(set) var version: UInt64 = 0

    private struct Entry {
        var namespace: UInt32
        var id: String
        /// The vector's length before cosine normalisation (0: not recorded).
        var norm: Float
    }

    /// The largest id, in UTF-8 bytes (Pinecone's limit).
    static let maximumIDBytes = 512

    /// An empty table, or an opened segment's.
    init(base: RecordBase? = nil) {
        self.base = base
        metadata = MetadataIndex(source: base)
        sparse = SparseIndex(base: base?.sparse)
        guard let base else { return }
        namespaceNames = base.namespaces
        for (i, name) in base.namespaces.enumerated() { namespaceNumbers[name] = UInt32(i) }
        namespaceCounts = base.namespaceCounts
        changedIDs = [[String: UInt32?]](repeating: [:], count: base.namespaces.count)
        capacity = base.slotCount
        count = base.recordCount
        for s in (0..<UInt32(base.slotCount)).reversed() where !base.isInUse(Int(s)) { freeSlots.append(s) }
    }

    /// Namespaces holding at least one record, with their counts.
    var namespaceCountsByName: [String: Int] {
        var out: [String: Int] = [:]
        for (i, n) in namespaceCounts.enumerated() where n > 0 { out[namespaceNames[i]] = n }
        return out
    }

    /// The records of a namespace (0 if it does not exist).
    func count(namespace: String) -> Int { namespaceNumbers[namespace].map { namespaceCounts[Int($0)] } ?? 0 }

    private func entry(_ slot: UInt32) -> Entry? {
        if let c = changed[slot] { return c }
        guard let base, base.isInUse(Int(slot)) else { return nil }
        return Entry(namespace: base.namespace(ofSlot: Int(slot)), id: base.id(ofSlot: Int(slot))!,
                     norm: base.norm(ofSlot: Int(slot)))
    }

    /// The length the record's vector had before a cosine index normalised
    /// it, or 0 when not recorded (euclidean and dot-product indexes keep
    /// vectors as given; segments written before norms were kept say 0).
    func norm(ofSlot slot: Int) -> Float { slot < capacity ? entry(UInt32(slot))?.norm ?? 0 : 0 }

    /// The id stored in `slot`, if in use.
    func id(ofSlot slot: Int) -> String? { slot < capacity ? entry(UInt32(slot))?.id : nil }

    /// Whether `slot` holds a record.
    func isInUse(_ slot: UInt32) -> Bool {
        if let c = changed[slot] { return c != nil }
        return base?.isInUse(Int(slot)) ?? false
    }

    /// The slot of `id` in `namespace`, if stored.
    func slot(id: String, namespace: String) -> UInt32? {
        guard let ns = namespaceNumbers[namespace] else { return nil }
        if let c = changedIDs[Int(ns)][id] { return c }
        return base?.slot(id: id, namespace: ns)
    }

    /// The slots of `namespace`, ascending.
    func slots(namespace: String) -> [UInt32] {
        guard let ns = namespaceNumbers[namespace], namespaceCounts[Int(ns)] > 0 else { return [] }
        var out: [UInt32] = []
        for s in 0..<UInt32(capacity) where entry(s)?.namespace == ns { out.append(s) }
        return out
    }

    /// The ids of `namespace`, in slot order.
    func ids(namespace: String) -> [String] {
        guard let ns = namespaceNumbers[namespace], namespaceCounts[Int(ns)] > 0 else { return [] }
        var out: [String] = []
        for s in 0..<UInt32(capacity) { if let e = entry(s), e.namespace == ns { out.append(e.id) } }
        return out
    }

    /// The slots of `namespace` as a set over ``capacity``.
    func slotSet(namespace: String) -> Bitset { Bitset(capacity: capacity, slots: slots(namespace: namespace).map { Int($0) }) }

    /// Slots for `n` new records: freed ones first (most recently freed
    /// first), then fresh ones. Nothing is reserved until ``set``.
    func slotsForNewRecords(_ n: Int) -> [UInt32] {
        var out = Array(freeSlots.suffix(n).reversed())
        var next = UInt32(capacity)
        while out.count < n {
            out.append(next)
            next += 1
        }
        return out
    }

    /// Stores (or overwrites) the record in `slot`; `norm` as ``norm(ofSlot:)``;
    /// `sparse` validated (ascending).
    func set(slot: UInt32, id: String, namespace: String, metadata: Metadata, norm: Float = 0,
             sparse sparseVector: SparseVector? = nil) {
        if slot >= UInt32(capacity) {
            for free in UInt32(capacity)..<slot { freeSlots.append(free) }
            capacity = Int(slot) + 1
        } else if let i = freeSlots.lastIndex(of: slot) {
            freeSlots.remove(at: i)
        }
        let ns = number(of: namespace)
        if let old = entry(slot) {
            // Overwriting a slot in use (a replaced record): drop its old id
            // mapping; the slot stays in use, never on the free list.
            forget(id: old.id, namespace: old.namespace, slot: slot)
            namespaceCounts[Int(old.namespace)] -= 1
            count -= 1
        }
        changed[slot] = .some(Entry(namespace: ns, id: id, norm: norm))
        touchedSinceSegment.insert(slot)
        changedIDs[Int(ns)][id] = slot
        namespaceCounts[Int(ns)] += 1
        count += 1
        self.metadata.set(metadata, slot: Int(slot))
        sparse.set(sparseVector, slot: slot)
        version &+= 1
    }

    /// Replaces the sparse vector of a slot in use.
    func setSparse(_ vector: SparseVector?, slot: UInt32) {
        touchedSinceSegment.insert(slot)
        sparse.set(vector, slot: slot)
        version &+= 1
    }

    /// Replaces the metadata of a slot in use.
    func setMetadata(_ metadata: Metadata, slot: UInt32) {
        touchedSinceSegment.insert(slot)
        self.metadata.set(metadata, slot: Int(slot))
        version &+= 1
    }

    /// Frees a slot in use.
    func clear(slot: UInt32) {
        guard Int(slot) < capacity, let old = entry(slot) else { return }
        forget(id: old.id, namespace: old.namespace, slot: slot)
        namespaceCounts[Int(old.namespace)] -= 1
        count -= 1
        // A slot the segment never held needs no tombstone: the overlay stays
        // as small as the changes that still matter (flat memory under churn).
        if base?.isInUse(Int(slot)) ?? false { changed[slot] = .some(nil) } else { changed[slot] = nil }
        metadata.set(nil, slot: Int(slot))
        sparse.set(nil, slot: slot)
        freeSlots.append(slot)
        touchedSinceSegment.insert(slot)
        version &+= 1
    }

    /// Drops `id`'s mapping to `slot`: a tombstone when the segment holds
    /// the id, else nothing at all. A mapping to another slot stays: a
    /// delta applies its changes in slot order, so a record deleted and
    /// stored again in a lower slot is set there before its old slot is
    /// cleared.
    private func forget(id: String, namespace ns: UInt32, slot: UInt32) {
        let current: UInt32?
        if let changed = changedIDs[Int(ns)][id] { current = changed } else { current = base?.slot(id: id, namespace: ns) }
        guard current == slot else { return }
        if base?.slot(id: id, namespace: ns) != nil {
            changedIDs[Int(ns)][id] = .some(nil)
        } else {
            changedIDs[Int(ns)][id] = nil
        }
    }

    private func number(of namespace: String) -> UInt32 {
        if let n = namespaceNumbers[namespace] { return n }
        let n = UInt32(namespaceNames.count)
        namespaceNames.append(namespace)
        namespaceNumbers[namespace] = n
        namespaceCounts.append(0)
        changedIDs.append([:])
        return n
    }

    // MARK: Persistence

    /// The table's segment sections (see ``RecordSections``).
    func sections(fingerprint: VectorFingerprint) -> [PendingSection] {
        RecordSections.sections(namespaces: namespaceNames, capacity: capacity, count: count,
                                namespaceCounts: namespaceCounts, fingerprint: fingerprint) { slot in
            guard let e = entry(slot) else { return nil }
            return (e.namespace, e.id, metadata.metadata(slot: Int(slot)) ?? [:], e.norm)
        } sparse: { slot in
            sparse.vector(slot: slot)
        }
    }

    // MARK: Changes since the segment (deltas)

    /// The table as it is now is the segment on disk (just written whole):
    /// later deltas carry only what changes from here.
    func segmentWritten() { touchedSinceSegment.removeAll() }

    /// The `records.changes` section of a delta (FORMAT.md): the
    /// namespaces, counts and fingerprint as they are now, then every slot
    /// set, cleared or given new metadata since the segment was written, with
    /// its record as it is now. Applied over the segment's table by
    /// ``applyChanges(_:dimension:path:)``.
    func changesSection(fingerprint: VectorFingerprint) -> PendingSection {
        var w = ByteWriter()
        // Layout 2 adds each record's sparse vector; written only when some
        // record has one, so older readers still apply the rest.
        let withSparse = sparse.count > 0
        w.u32(withSparse ? 2 : 1)  // layout version
        w.u32(UInt32(namespaceNames.count))
        for (name, n) in zip(namespaceNames, namespaceCounts) {
            w.lengthPrefixed(name)
            w.u64(UInt64(n))
        }
        w.u64(UInt64(capacity))
        w.u64(UInt64(count))
        fingerprint.encode(into: &w)
        let slots = touchedSinceSegment.sorted()
        w.u32(UInt32(slots.count))
        for slot in slots {
            w.u32(slot)
            guard let e = entry(slot) else {
                w.raw([0])
                continue
            }
            w.raw([1])
            w.u32(e.namespace)
            w.lengthPrefixed(e.id)
            w.u32(e.norm.bitPattern)
            var m = ByteWriter()
            MetadataCodec.encode(metadata.metadata(slot: Int(slot)) ?? [:], into: &m)
            w.u32(UInt32(m.bytes.count))
            w.raw(m.bytes)
            if withSparse { SparseCodec.encode(sparse.vector(slot: slot), into: &w) }
        }
        return PendingSection(kind: SectionKind.recordsChanges, codec: .lz4, owned: w.bytes)
    }

    /// Applies a delta's `records.changes` section over this table, freshly
    /// made over the delta's segment; returns the fingerprint it carries.
    func applyChanges(_ bytes: [UInt8], dimension: Int, path: String) throws(LodestoneError) -> VectorFingerprint {
        func corrupt(_ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: "records.changes", reason: reason)
        }
        var r = ByteReader(bytes) { corrupt("truncated") }
        func string() throws(LodestoneError) -> String {
            let n = Int(try r.u32())
            guard n <= bytes.count else { throw corrupt("a string of \(n) bytes") }
            guard let s = String(validating: try r.raw(n), as: UTF8.self) else { throw corrupt("a string is not UTF-8") }
            return s
        }
        let layout = try r.u32()
        guard layout == 1 || layout == 2 else { throw corrupt("unknown layout version \(layout)") }
        let namespaceCount = Int(try r.u32())
        guard namespaceCount <= bytes.count else { throw corrupt("\(namespaceCount) namespaces") }
        var names: [String] = [], counts: [Int] = []
        for i in 0..<namespaceCount {
            let name = try string()
            // The segment's namespaces keep their numbers; new ones follow in order.
            guard number(of: name) == UInt32(i) else { throw corrupt("namespace \(name) is not number \(i)") }
            names.append(name)
            counts.append(Int(try r.u64()))
        }
        let slotCount = Int(try r.u64()), recordCount = Int(try r.u64())
        let fingerprint: VectorFingerprint
        do {
            fingerprint = try VectorFingerprint.decode(&r, dimension: dimension)
        } catch {
            throw corrupt("fingerprint: \(error)")
        }
        let changes = Int(try r.u32())
        for _ in 0..<changes {
            let slot = try r.u32()
            guard Int(slot) < slotCount else { throw corrupt("slot \(slot) beyond \(slotCount) slots") }
            switch try r.raw(1)[0] {
            case 0:
                clear(slot: slot)
            case 1:
                let ns = Int(try r.u32())
                guard ns < names.count else { throw corrupt("namespace number \(ns) of \(names.count)") }
                let id = try string()
                let norm = Float(bitPattern: try r.u32())
                let length = Int(try r.u32())
                var m = ByteReader(try r.raw(length)) { corrupt("metadata of slot \(slot) truncated") }
                let metadata = try MetadataCodec.decode(&m)
                let sparseVector = layout == 2 ? try SparseCodec.decode(&r) { corrupt("sparse vector of slot \(slot): \($0)") } : nil
                set(slot: slot, id: id, namespace: names[ns], metadata: metadata, norm: norm, sparse: sparseVector)
            default:
                throw corrupt("slot \(slot) has an unknown change tag")
            }
        }
        if slotCount > capacity {
            for free in UInt32(capacity)..<UInt32(slotCount) { freeSlots.append(free) }
            capacity = slotCount
        }
        guard count == recordCount, namespaceCounts == counts, capacity == slotCount else {
            throw corrupt("\(count) records in \(capacity) slots after the changes, expected \(recordCount) in \(slotCount)")
        }
        return fingerprint
    }
}
