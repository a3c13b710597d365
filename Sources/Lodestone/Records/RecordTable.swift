/// The records of an ``Index`` other than their vectors: for every slot in
/// use, the record's namespace, string id and metadata (indexed by a
/// ``MetadataIndex``). A record's slot is also its key in the vector index,
/// so slots are dense and reused once freed, and a filter's matching slots
/// are directly the keys a search may return.
///
/// Not thread-safe: its owner serialises writers and readers.
final class RecordTable {
    private(set) var ids: [String?] = []
    private(set) var namespaceOfSlot: [UInt32] = []
    private(set) var namespaceNames: [String] = []
    private var namespaceNumbers: [String: UInt32] = [:]
    private var slotsByID: [[String: UInt32]] = []
    private var freeSlots: [UInt32] = []
    let metadata = MetadataIndex()
    /// Bumped by every change (cached filter results check it).
    private(set) var version: UInt64 = 0

    /// The largest id, in UTF-8 bytes (Pinecone's limit).
    static let maximumIDBytes = 512

    init() {}

    /// Slots covered (one past the highest slot ever used).
    var capacity: Int { ids.count }

    /// Records stored, over all namespaces.
    var count: Int { slotsByID.reduce(0) { $0 + $1.count } }

    /// Namespaces holding at least one record, with their counts.
    var namespaceCounts: [String: Int] {
        var out: [String: Int] = [:]
        for (i, slots) in slotsByID.enumerated() where !slots.isEmpty { out[namespaceNames[i]] = slots.count }
        return out
    }

    /// The records of a namespace (0 if it does not exist).
    func count(namespace: String) -> Int {
        namespaceNumbers[namespace].map { slotsByID[Int($0)].count } ?? 0
    }

    /// The slot of `id` in `namespace`, if stored.
    func slot(id: String, namespace: String) -> UInt32? {
        guard let ns = namespaceNumbers[namespace] else { return nil }
        return slotsByID[Int(ns)][id]
    }

    /// The ids of `namespace`, unordered.
    func ids(namespace: String) -> [String] {
        guard let ns = namespaceNumbers[namespace] else { return [] }
        return Array(slotsByID[Int(ns)].keys)
    }

    /// The slots of `namespace`.
    func slots(namespace: String) -> [UInt32] {
        guard let ns = namespaceNumbers[namespace] else { return [] }
        return Array(slotsByID[Int(ns)].values)
    }

    /// The slots of `namespace` as a set over ``capacity``.
    func slotSet(namespace: String) -> Bitset {
        var out = Bitset(capacity: capacity)
        if let ns = namespaceNumbers[namespace] { for s in slotsByID[Int(ns)].values { out.insert(Int(s)) } }
        return out
    }

    /// The namespace of a slot in use.
    func namespace(ofSlot slot: UInt32) -> String { namespaceNames[Int(namespaceOfSlot[Int(slot)])] }

    /// Slots for `n` new records: freed ones first (most recently freed
    /// first), then fresh ones. Nothing is reserved until ``set``.
    func slotsForNewRecords(_ n: Int) -> [UInt32] {
        var out = Array(freeSlots.suffix(n).reversed())
        var next = UInt32(ids.count)
        while out.count < n {
            out.append(next)
            next += 1
        }
        return out
    }

    /// Stores (or overwrites) the record in `slot`.
    func set(slot: UInt32, id: String, namespace: String, metadata: Metadata) {
        let s = Int(slot)
        if s >= ids.count {
            for free in UInt32(ids.count)..<slot { freeSlots.append(free) }
            ids += [String?](repeating: nil, count: s + 1 - ids.count)
            namespaceOfSlot += [UInt32](repeating: 0, count: s + 1 - namespaceOfSlot.count)
        } else if let i = freeSlots.lastIndex(of: slot) {
            freeSlots.remove(at: i)
        }
        if let old = ids[s] {
            // Overwriting a slot in use (a replaced record): drop its old id
            // mapping; the slot stays in use, never on the free list.
            slotsByID[Int(namespaceOfSlot[s])][old] = nil
        }
        let ns = number(of: namespace)
        ids[s] = id
        namespaceOfSlot[s] = ns
        slotsByID[Int(ns)][id] = slot
        self.metadata.set(metadata, slot: s)
        version &+= 1
    }

    /// Replaces the metadata of a slot in use.
    func setMetadata(_ metadata: Metadata, slot: UInt32) {
        self.metadata.set(metadata, slot: Int(slot))
        version &+= 1
    }

    /// Frees a slot in use.
    func clear(slot: UInt32) {
        let s = Int(slot)
        guard s < ids.count, let id = ids[s] else { return }
        slotsByID[Int(namespaceOfSlot[s])][id] = nil
        ids[s] = nil
        metadata.set(nil, slot: s)
        freeSlots.append(slot)
        version &+= 1
    }

    private func number(of namespace: String) -> UInt32 {
        if let n = namespaceNumbers[namespace] { return n }
        let n = UInt32(namespaceNames.count)
        namespaceNames.append(namespace)
        namespaceNumbers[namespace] = n
        slotsByID.append([:])
        return n
    }

    // MARK: Persistence

    /// The table as section bytes: namespaces, the slot count, then each
    /// record in use (slot, namespace number, id, metadata).
    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u32(UInt32(namespaceNames.count))
        for name in namespaceNames {
            let b = Array(name.utf8)
            w.u32(UInt32(b.count))
            w.raw(b)
        }
        w.u64(UInt64(ids.count))
        w.u64(UInt64(count))
        for (s, id) in ids.enumerated() {
            guard let id else { continue }
            w.u64(UInt64(s))
            w.u32(namespaceOfSlot[s])
            let b = Array(id.utf8)
            w.u32(UInt32(b.count))
            w.raw(b)
            MetadataCodec.encode(metadata.metadata(slot: s) ?? [:], into: &w)
        }
        return w.bytes
    }

    /// A table from ``encoded()`` bytes; `corrupt` makes the error for
    /// damage (checksums passed, so this means a bug or a forged file).
    static func decode(_ bytes: [UInt8], corrupt: @escaping (String) -> LodestoneError) throws(LodestoneError) -> RecordTable {
        var r = ByteReader(bytes) { corrupt("truncated") }
        let table = RecordTable()
        let namespaces = Int(try r.u32())
        guard namespaces <= bytes.count else { throw corrupt("\(namespaces) namespaces") }
        for _ in 0..<namespaces {
            let name = try MetadataCodec.readString(&r)
            guard table.namespaceNumbers[name] == nil else { throw corrupt("namespace \"\(name)\" listed twice") }
            _ = table.number(of: name)
        }
        let capacity = try r.u64(), records = try r.u64()
        guard capacity < 1 << 32, records <= capacity else { throw corrupt("\(records) records in \(capacity) slots") }
        for _ in 0..<records {
            let slot = try r.u64(), ns = try r.u32()
            let id = try MetadataCodec.readString(&r)
            let metadata: Metadata
            do throws(LodestoneError) {
                metadata = try MetadataCodec.decode(&r)
            } catch {
                throw corrupt("record \"\(id)\": \(error)")
            }
            guard slot < capacity, Int(ns) < namespaces, table.ids.count <= slot || table.ids[Int(slot)] == nil,
                  table.slotsByID[Int(ns)][id] == nil else {
                throw corrupt("record \"\(id)\" (slot \(slot), namespace \(ns)) is out of range or stored twice")
            }
            table.set(slot: UInt32(slot), id: id, namespace: table.namespaceNames[Int(ns)], metadata: metadata)
        }
        if table.ids.count < Int(capacity) {
            for s in UInt32(table.ids.count)..<UInt32(capacity) { table.freeSlots.append(s) }
            table.ids += [String?](repeating: nil, count: Int(capacity) - table.ids.count)
            table.namespaceOfSlot += [UInt32](repeating: 0, count: Int(capacity) - table.namespaceOfSlot.count)
        }
        guard r.position == bytes.count else { throw corrupt("\(bytes.count - r.position) bytes after the last record") }
        return table
    }
}
