extension Index {
    /// Applies one logged write: live, after logging it (under `lock`),
    /// or at open, replaying the log (no lock: nothing else sees the index yet).
    static func apply(_ record: LogRecord, engine: VectorEngine, table: RecordTable,
                      fingerprint: inout VectorFingerprint, dimension d: Int, lock: ReadWriteLock?, threads: Int)
        throws(LodestoneError)
    {
        switch record {
        case let .upsert(namespace, slots, ids, rows, metadata, sparse):
            _ = try VectorPreparation.prepareRows(rows, count: ids.count, dimension: d, metric: engine.metric, kernels: engine.kernels)
            try applyUpsert(namespace: namespace, ids: ids, slots: slots, rows: rows, metadata: metadata, sparse: sparse,
                            engine: engine, table: table, fingerprint: &fingerprint, dimension: d, lock: lock,
                            threads: threads)
        case let .delete(slots):
            try applyDelete(slots, engine: engine, table: table, lock: lock)
        case let .setMetadata(slots, metadata), let .setMetadataAndSparse(slots, metadata, _):
            for slot in slots where !table.isInUse(slot) {
                throw LogRecord.corrupt("metadata for slot \(slot), which holds no record")
            }
            var sparse: [SparseVector?] = []
            if case let .setMetadataAndSparse(_, _, vectors) = record { sparse = vectors }
            applyMetadata(Array(zip(slots, metadata)), sparse: sparse, table: table, lock: lock)
        case .keyedUpsert, .keyedRemove:
            throw LogRecord.corrupt("a DurableIndex's record in an Index's log")
        }
    }

    static func applyUpsert(namespace: String, ids: [String], slots: [UInt32], rows: [Float], metadata: [Metadata],
                            sparse: [SparseVector?], engine: VectorEngine, table: RecordTable, fingerprint: inout VectorFingerprint,
                            dimension d: Int, lock: ReadWriteLock?, threads: Int) throws(LodestoneError) {
        // Readers see the fingerprint under the read lock
        // (``vectorFingerprint``), so it changes under the write lock.
        exclusively(lock) { fingerprint.add(rows, dimension: d) }
        // A cosine index stores unit vectors: keep each one's length, so the
        // values come back as they were given.
        let norms: [Float] = engine.metric != .cosine ? [] : (0..<ids.count).map { i in
            var sum = 0.0
            for v in rows[(i * d)..<((i + 1) * d)] { sum += Double(v) * Double(v) }
            return Float(sum.squareRoot())
        }
        var start = 0
        while start < ids.count {
            let end = min(ids.count, start + applyBatchSize)
            let piece = Array(rows[(start * d)..<(end * d)])
            let keys = slots[start..<end].map { UInt64($0) }
            try exclusively(lock) { () throws(LodestoneError) in
                // A slot held by another id (a replay over a reused slot) is
                // cleared first; the engine replaces its vector.
                try engine.upsert(piece, keys: keys, threads: threads)
                for i in start..<end {
                    table.set(slot: slots[i], id: ids[i], namespace: namespace, metadata: metadata[i],
                              norm: norms.isEmpty ? 0 : norms[i], sparse: sparse.isEmpty ? nil : sparse[i])
                }
            }
            start = end
        }
    }

    /// Sets new metadata, and new sparse vectors when `sparse` is not
    /// empty (one per change).
    static func applyMetadata(_ changes: [(UInt32, Metadata)], sparse: [SparseVector?] = [], table: RecordTable,
                              lock: ReadWriteLock?) {
        exclusively(lock) {
            for (i, (slot, metadata)) in changes.enumerated() {
                table.setMetadata(metadata, slot: slot)
                if !sparse.isEmpty { table.setSparse(sparse[i], slot: slot) }
            }
        }
    }

    static func applyDelete(_ slots: [UInt32], engine: VectorEngine, table: RecordTable, lock: ReadWriteLock?)
        throws(LodestoneError)
    {
        var start = 0
        while start < slots.count {
            let end = min(slots.count, start + applyBatchSize)
            exclusively(lock) {
                for s in slots[start..<end] where table.isInUse(s) {
                    engine.remove(key: UInt64(s))
                    table.clear(slot: s)
                }
            }
            start = end
        }
    }

    /// Runs `body` under the write lock when applying live, or directly at
    /// replay (no lock: nothing else sees the index yet).
    private static func exclusively<T, E: Error>(_ lock: ReadWriteLock?, _ body: () throws(E) -> T) throws(E) -> T {
        if let lock { return try lock.writing(body) }
        return try body()
    }
}
