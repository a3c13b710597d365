extension Index {
    /// The records with these ids in `namespace`, by id (absent ids are
    /// left out).
    public func fetch(ids: [String], namespace: String = "") throws(LodestoneError) -> [String: Record] {
        try checkOpen()
        return try lock.reading { () throws(LodestoneError) -> [String: Record] in
            var out: [String: Record] = [:]
            for id in ids {
                guard let slot = table.slot(id: id, namespace: namespace),
                      let v = values(ofSlot: slot) else { continue }
                let m = table.metadata.metadata(slot: Int(slot))
                out[id] = Record(id: id, values: v, metadata: (m?.isEmpty ?? true) ? nil : m,
                                 sparseValues: table.sparse.vector(slot: slot))
            }
            // A damaged chunk met on the way gave fill bytes: never return them.
            try engine.checkIntegrity()
            return out
        }
    }

    /// The records of `namespace` whose metadata passes `filter`, up to
    /// `limit`, by id.
    public func fetch(filter: Filter, namespace: String = "", limit: Int = 100) throws(LodestoneError) -> [String: Record] {
        try checkOpen()
        let ids: [String] = lock.reading {
            guard let (set, _) = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true) else { return [] }
            var out: [String] = []
            set!.forEach { if out.count < limit, let id = table.id(ofSlot: $0) { out.append(id) } }
            return out
        }
        return try fetch(ids: ids, namespace: namespace)
    }

    /// Ids of `namespace` in ascending byte order, starting with `prefix`
    /// and (when given) passing `filter`, `limit` at a time; pass the
    /// returned token for the next page.
    public func listIDs(namespace: String = "", prefix: String = "", filter: Filter? = nil, limit: Int = 100,
                        paginationToken: String? = nil) throws(LodestoneError) -> IDPage
    {
        try checkOpen()
        guard limit >= 1 else { throw .invalidArgument(name: "limit", reason: "must be at least 1, got \(limit)") }
        // The namespace's ids in byte order (sorted once per table version),
        // and the filter's matching slots.
        let (order, allowed): (SortedIDs, Bitset?) = lock.reading {
            let version = table.version
            let order = sortedIDs.withLock { cached -> SortedIDs in
                if let cached, cached.namespace == namespace, cached.version == version { return cached.order }
                let slots = table.slots(namespace: namespace)
                var pairs = slots.map { (Array(table.id(ofSlot: Int($0))!.utf8), $0) }
                pairs.sort { $0.0.lexicographicallyPrecedes($1.0) }
                let order = SortedIDs(ids: pairs.map(\.0), slots: pairs.map(\.1))
                cached = (namespace, version, order)
                return order
            }
            guard let filter else { return (order, nil) }
            let set = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true)?.0 ?? Bitset(capacity: 0)
            return (order, set)
        }
        // Binary search to the first id after the token and not before the
        // prefix; the prefix's ids are contiguous from there.
        let prefixBytes = Array(prefix.utf8)
        let tokenBytes = paginationToken.map { Array($0.utf8) }
        var low = 0, high = order.ids.count
        while low < high {
            let mid = (low + high) / 2
            let id = order.ids[mid]
            let beforeStart = id.lexicographicallyPrecedes(prefixBytes)
                || (tokenBytes.map { !$0.lexicographicallyPrecedes(id) } ?? false)
            if beforeStart { low = mid + 1 } else { high = mid }
        }
        var page: [String] = []
        var more = false
        var i = low
        while i < order.ids.count, order.ids[i].starts(with: prefixBytes) {
            if allowed?.contains(Int(order.slots[i])) ?? true {
                if page.count == limit { more = true; break }
                page.append(String(decoding: order.ids[i], as: UTF8.self))
            }
            i += 1
        }
        return IDPage(ids: page, nextToken: more ? page.last : nil)
    }

    /// How many records of `namespace` pass `filter` (all of them when nil),
    /// counted from the metadata index without reading a record.
    public func count(namespace: String = "", filter: Filter? = nil) throws(LodestoneError) -> Int {
        try checkOpen()
        return lock.reading { allowedSlots(filter: filter, namespace: namespace)?.1 ?? 0 }
    }

    /// Record counts per namespace, the dimension and the total.
    public func describeStats() throws(LodestoneError) -> IndexStats {
        try checkOpen()
        return lock.reading {
            IndexStats(namespaces: table.namespaceCountsByName, dimension: dimension, totalRecordCount: table.count, metric: metric)
        }
    }

    /// The stored vectors' fingerprint.
    public var vectorFingerprint: VectorFingerprint { lock.reading { fingerprint } }

    /// How `vectors` compare with the stored ones: whether they look like
    /// another embedding model's (see ``FingerprintComparison``).
    public func compareWithStored(_ vectors: [[Float]]) throws(LodestoneError) -> FingerprintComparison {
        for v in vectors where v.count != rowDimension { throw .dimensionMismatch(expected: rowDimension, actual: v.count) }
        return lock.reading { fingerprint.compare(vectors.flatMap { $0 }, dimension: rowDimension) }
    }

    /// Records over all namespaces.
    public var count: Int { lock.reading { table.count } }

    /// Bytes per vector that searches read (see ``IndexDescription/residentBytesPerVector``);
    /// nil for a sparse index.
    public var residentBytesPerVector: Int? {
        kind == .sparse ? nil : lock.reading { engine.residentBytesPerVector }
    }

    /// Verifies every checksum and link of the index's segment (a flat
    /// index's were all verified when it opened).
    /// - Throws: ``LodestoneError/corruptSegment(path:section:reason:)``.
    public func verify() throws(LodestoneError) {
        try checkOpen()
        try lock.reading { () throws(LodestoneError) in try engine.hnsw?.verify() }
    }

    /// Every record of every namespace, namespace by namespace (for export).
    func forEachRecord(_ body: (String, Record) throws(LodestoneError) -> Void) throws(LodestoneError) {
        let namespaces = lock.reading { table.namespaceNames }
        for ns in namespaces {
            let ids = lock.reading { table.ids(namespace: ns) }.sorted()
            var start = 0
            while start < ids.count {
                let chunk = Array(ids[start..<min(ids.count, start + 256)])
                let records = try fetch(ids: chunk, namespace: ns)
                for id in chunk { if let r = records[id] { try body(ns, r) } }
                start += chunk.count
            }
        }
    }
}

/// A namespace's ids in byte order, with their slots.
struct SortedIDs {
    var ids: [[UInt8]]
    var slots: [UInt32]
}
