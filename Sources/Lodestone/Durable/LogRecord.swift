/// One write as an index directory's write-ahead log holds it, with the one
/// codec that writes it (the live path) and reads it back (replay), so the
/// two cannot drift. The byte layouts are specified in
/// `Storage/FORMAT.md` ("Index directories").
///
/// Two layouts share the log's framing: an ``Index``'s records (ids,
/// namespaces, metadata, by slot) and a ``DurableIndex``'s (vectors by
/// key). A directory holds one or the other (its manifest says which), so
/// the reader is told the layout rather than guessing it from the bytes.
enum LogRecord: Equatable {
    /// `Index`: records upserted into `namespace`, each with its slot, id,
    /// vector as given (row-major in `rows`), whole metadata and sparse
    /// vector (`sparse` empty when no record has one; else one per record).
    case upsert(namespace: String, slots: [UInt32], ids: [String], rows: [Float], metadata: [Metadata],
                sparse: [SparseVector?] = [])
    /// `Index`: the records in these slots deleted.
    case delete(slots: [UInt32])
    /// `Index`: these slots' records given this whole new metadata.
    case setMetadata(slots: [UInt32], metadata: [Metadata])
    /// `Index`: these slots' records given this whole new metadata and
    /// sparse vector (nil: none).
    case setMetadataAndSparse(slots: [UInt32], metadata: [Metadata], sparse: [SparseVector?])
    /// `DurableIndex`: vectors (row-major) stored under `keys`.
    case keyedUpsert(keys: [UInt64], rows: [Float])
    /// `DurableIndex`: the vectors under `keys` removed.
    case keyedRemove(keys: [UInt64])

    /// Which owner's records a log holds.
    enum Layout {
        /// An ``Index``'s: operations 1 upsert, 2 delete, 3 metadata, 4
        /// upsert with sparse vectors, 5 metadata and sparse vectors.
        case records
        /// A ``DurableIndex``'s: operations 1 upsert, 2 remove.
        case keyed
    }

    /// A payload that is not a record: section `log record`, no path (the
    /// log's reader, `DurableStore.open`, names the file and the record).
    static func corrupt(_ reason: String) -> LodestoneError {
        .corruptSegment(path: "", section: corruptSection, reason: reason)
    }
    static let corruptSection = "log record"

    private static let upsertOp: UInt8 = 1
    private static let deleteOp: UInt8 = 2
    private static let metadataOp: UInt8 = 3
    private static let sparseUpsertOp: UInt8 = 4
    private static let sparseMetadataOp: UInt8 = 5

    /// The payload's bytes (the log adds length, checksum and padding) for
    /// an owner of `d`-component vectors: the dimension is written as the
    /// owner's, not derived from the rows, so an empty batch still reads
    /// back.
    func encoded(dimension d: Int) -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case let .upsert(namespace, slots, ids, rows, metadata, sparse):
            let count = slots.count
            precondition(rows.count == count * d, "rows do not hold \(count) vectors of \(d)")
            precondition(sparse.isEmpty || sparse.count == count, "sparse vectors do not match \(count) records")
            // Without sparse vectors, operation 1 as before: older readers still replay it.
            w.raw([sparse.isEmpty ? Self.upsertOp : Self.sparseUpsertOp])
            w.lengthPrefixed(namespace)
            w.u32(UInt32(count))
            w.u32(UInt32(d))
            for i in 0..<count {
                w.u32(slots[i])
                w.lengthPrefixed(ids[i])
                for v in rows[(i * d)..<((i + 1) * d)] { w.u32(v.bitPattern) }
                MetadataCodec.encode(metadata[i], into: &w)
                if !sparse.isEmpty { SparseCodec.encode(sparse[i], into: &w) }
            }
        case let .delete(slots):
            w.raw([Self.deleteOp])
            w.u32(UInt32(slots.count))
            for s in slots { w.u32(s) }
        case let .setMetadata(slots, metadata):
            w.raw([Self.metadataOp])
            w.u32(UInt32(slots.count))
            for (slot, m) in zip(slots, metadata) {
                w.u32(slot)
                MetadataCodec.encode(m, into: &w)
            }
        case let .setMetadataAndSparse(slots, metadata, sparse):
            w.raw([Self.sparseMetadataOp])
            w.u32(UInt32(slots.count))
            for i in slots.indices {
                w.u32(slots[i])
                MetadataCodec.encode(metadata[i], into: &w)
                SparseCodec.encode(sparse[i], into: &w)
            }
        case let .keyedUpsert(keys, rows):
            precondition(rows.count == keys.count * d, "rows do not hold \(keys.count) vectors of \(d)")
            w.raw([Self.upsertOp])
            w.u32(UInt32(keys.count))
            w.u32(UInt32(d))
            for (i, key) in keys.enumerated() {
                w.u64(key)
                for v in rows[(i * d)..<((i + 1) * d)] { w.u32(v.bitPattern) }
            }
        case let .keyedRemove(keys):
            w.raw([Self.deleteOp])
            w.u32(UInt32(keys.count))
            for key in keys { w.u64(key) }
        }
        return w.bytes
    }

    /// Reads a payload written by ``encoded(dimension:)`` for an owner of
    /// `dimension`-component vectors.
    /// - Throws: ``LodestoneError/corruptSegment(path:section:reason:)``
    ///   (section `log record`; the log's reader adds the file and the
    ///   record's number) when the bytes are not such a record.
    static func decode(_ bytes: [UInt8], layout: Layout, dimension d: Int) throws(LodestoneError) -> LogRecord {
        var r = ByteReader(bytes) { corrupt("truncated") }
        let op = try r.raw(1)[0]
        // Every counted item takes at least 4 bytes: a larger count cannot
        // be real, and must not size an allocation.
        func count() throws(LodestoneError) -> Int {
            let n = Int(try r.u32())
            guard n <= bytes.count / 4 else { throw corrupt("count \(n) in \(bytes.count) bytes") }
            return n
        }
        func dimension() throws(LodestoneError) -> Int {
            let dim = Int(try r.u32())
            guard dim == d else { throw corrupt("\(dim)-dimensional vectors in an index of \(d) dimensions") }
            return dim
        }
        let record: LogRecord
        switch (layout, op) {
        case (.records, upsertOp), (.records, sparseUpsertOp):
            let namespace = try r.lengthPrefixedString()
            let n = try count()
            _ = try dimension()
            var ids: [String] = [], slots: [UInt32] = [], rows: [Float] = [], metadata: [Metadata] = []
            var sparse: [SparseVector?] = []
            rows.reserveCapacity(n * d)
            for _ in 0..<n {
                slots.append(try r.u32())
                ids.append(try r.lengthPrefixedString())
                for _ in 0..<d { rows.append(Float(bitPattern: try r.u32())) }
                metadata.append(try MetadataCodec.decode(&r))
                if op == sparseUpsertOp { sparse.append(try SparseCodec.decode(&r) { corrupt("sparse vector: \($0)") }) }
            }
            record = .upsert(namespace: namespace, slots: slots, ids: ids, rows: rows, metadata: metadata, sparse: sparse)
        case (.records, deleteOp):
            let n = try count()
            var slots: [UInt32] = []
            for _ in 0..<n { slots.append(try r.u32()) }
            record = .delete(slots: slots)
        case (.records, metadataOp):
            let n = try count()
            var slots: [UInt32] = [], metadata: [Metadata] = []
            for _ in 0..<n {
                slots.append(try r.u32())
                metadata.append(try MetadataCodec.decode(&r))
            }
            record = .setMetadata(slots: slots, metadata: metadata)
        case (.records, sparseMetadataOp):
            let n = try count()
            var slots: [UInt32] = [], metadata: [Metadata] = [], sparse: [SparseVector?] = []
            for _ in 0..<n {
                slots.append(try r.u32())
                metadata.append(try MetadataCodec.decode(&r))
                sparse.append(try SparseCodec.decode(&r) { corrupt("sparse vector: \($0)") })
            }
            record = .setMetadataAndSparse(slots: slots, metadata: metadata, sparse: sparse)
        case (.keyed, upsertOp):
            let n = try count()
            _ = try dimension()
            guard n * (8 + 4 * d) == bytes.count - 9 else { throw corrupt("\(n) vectors do not fill \(bytes.count) bytes") }
            var keys: [UInt64] = [], rows: [Float] = []
            keys.reserveCapacity(n)
            rows.reserveCapacity(n * d)
            for _ in 0..<n {
                keys.append(try r.u64())
                for _ in 0..<d { rows.append(Float(bitPattern: try r.u32())) }
            }
            record = .keyedUpsert(keys: keys, rows: rows)
        case (.keyed, deleteOp):
            let n = try count()
            var keys: [UInt64] = []
            for _ in 0..<n { keys.append(try r.u64()) }
            record = .keyedRemove(keys: keys)
        default:
            throw corrupt("unknown operation \(op)")
        }
        guard r.remaining == 0 else { throw corrupt("\(r.remaining) bytes after the record") }
        return record
    }
}
