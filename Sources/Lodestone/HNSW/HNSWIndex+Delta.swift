import CLodestoneKernels

/// Incremental persistence: a *delta* file holds every record the index
/// wrote since the segment it was opened from (or last wrote in full), so
/// persisting a small change costs in proportion to the change, not to the
/// index. Format in `Sources/Lodestone/Storage/FORMAT.md` ("Deltas").
extension HNSWIndex {
    /// The header's index kind of an HNSW delta file.
    static let deltaKind: UInt32 = 3

    /// The arenas a delta patches, with their section kinds and record
    /// counts; the neighbour or compact codes with `codes` (when the base
    /// segment holds them and they are built; the writer's lock held).
    private func patchedArenas(nodes n: Int, upperBlocks: Int, codes: Bool)
        -> [(arena: NodeArena, kind: UInt32, count: Int)]
    {
        [(vectors, SectionKind.vectors, n), (keyRecords, SectionKind.keys, n), (states, SectionKind.states, n),
         (levelRecords, SectionKind.hnswLevels, n), (links0, SectionKind.hnswLinks0, n),
         (upperStart, SectionKind.hnswUpperStart, n), (upperLinks, SectionKind.hnswUpperLinks, upperBlocks)]
            + (codes ? neighbourCodes.map { [($0.blocks, SectionKind.hnswNeighbourCodes, n)] } ?? [] : [])
            + (codes ? compactCodes.map { [($0.records, SectionKind.hnswCompactCodes, n)] } ?? [] : [])
    }

    /// Whether deltas carry the neighbour or compact codes: the base
    /// segment holds them and they are built (the writer's lock held).
    private var deltasCarryCodes: Bool {
        neighbourCodes.map { $0.inBase && $0.isReady } ?? compactCodes.map { $0.inBase && $0.isReady } ?? false
    }

    /// Bytes the records written since the segment take in a delta (what
    /// ``persistDelta(to:extraSections:)`` would write, headers aside).
    func changedBytes() -> Int {
        writer.withLock { w in
            patchedArenas(nodes: nodeCount.load(ordering: .acquiring), upperBlocks: w.upperBlocks,
                          codes: deltasCarryCodes).reduce(0) {
                $0 + $1.arena.dirtyIDs(below: $1.count).count * (4 + $1.arena.stride)
            }
        }
    }

    /// Forgets which records changed: the caller has just made a segment of
    /// everything (``persist(to:compact:)`` without renumbering) the base
    /// later deltas describe changes against.
    func clearChanges() {
        writer.withLock { _ in
            for (arena, _, _) in patchedArenas(nodes: 0, upperBlocks: 0, codes: true) { arena.clearDirty() }
            neighbourCodes?.inBase = neighbourCodes?.inLastPersist ?? false
            compactCodes?.inBase = compactCodes?.inLastPersist ?? false
        }
    }

    /// Writes a delta file at `path` (atomically): the parameters and the
    /// removed-node lists as they are now, and, per per-node section, each
    /// record written since the base segment, as (UInt32 id, record) pairs;
    /// plus the owner's `extraSections`. Searches may run meanwhile; writers wait.
    func persistDelta(to path: String, extraSections: [PendingSection]) throws(LodestoneError) {
        try writer.withLock { (w: inout WriterState) throws(LodestoneError) in
            let n = nodeCount.load(ordering: .acquiring)
            var sections = [PendingSection(kind: SectionKind.parameters, owned: parameterBytes(
                nodes: n, live: liveCount.load(ordering: .acquiring), entry: entry.load(ordering: .acquiring),
                upperBlocks: w.upperBlocks, insertions: w.insertions))]
            for (arena, kind, count) in patchedArenas(nodes: n, upperBlocks: w.upperBlocks, codes: deltasCarryCodes) {
                let ids = arena.dirtyIDs(below: count)
                var patch = PendingSection(kind: Self.patchKind(kind), stride: 4 + arena.stride, count: ids.count)
                patch.producer = { emit throws(LodestoneError) in try Self.patchPairs(arena, ids: ids, emit) }
                sections.append(patch)
            }
            sections += removedNodeSections(w)
            try checkIntact()
            try SegmentWriter.write(path: path, indexKind: HNSWIndex.deltaKind, embeddingModel: embeddingModel,
                                    sections: sections + extraSections, beforeCommit: checkIntact)
        }
    }

    /// Emits the (UInt32 id, record) pairs of `ids` a batch at a time, so a
    /// large delta is never built whole in memory; spilled records leave
    /// memory once written.
    private static func patchPairs(_ arena: NodeArena, ids: [UInt32],
                                   _ emit: (UnsafeRawBufferPointer) throws(LodestoneError) -> Void) throws(LodestoneError) {
        let stride = 4 + arena.stride
        let batch = 1_024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(ids.count, batch) * stride, alignment: 16)
        defer { buffer.deallocate() }
        var start = 0
        while start < ids.count {
            let part = ids[start..<min(ids.count, start + batch)]
            for (i, id) in part.enumerated() {
                buffer.storeBytes(of: id.littleEndian, toByteOffset: i * stride, as: UInt32.self)
                (buffer.baseAddress! + i * stride + 4).copyMemory(from: arena.record(id), byteCount: arena.stride)
            }
            try emit(UnsafeRawBufferPointer(rebasing: buffer[0..<part.count * stride]))
            arena.dropSpilledPages(ids: part.first!...part.last!)
            start += part.count
        }
    }

    /// The patch section kind for a per-node section kind.
    static func patchKind(_ kind: UInt32) -> UInt32 { SectionKind.patchBase + kind }

    /// Reads `delta`'s parameters, checked against the base segment's
    /// settings: the counts the index has once the delta is applied.
    static func deltaCounts(_ delta: MappedSegment, base: (dimension: Int, metric: UInt64, m: Int, nodes: Int, upperBlocks: Int))
        throws(LodestoneError) -> (nodes: Int, live: Int, entry: UInt64, upperBlocks: Int, insertions: UInt64)
    {
        func corrupt(_ reason: String) -> LodestoneError {
            .corruptSegment(path: delta.path, section: "parameters", reason: reason)
        }
        guard delta.indexKind == deltaKind else {
            throw .corruptSegment(path: delta.path, section: "header",
                                  reason: "index kind \(delta.indexKind) is not an HNSW delta (\(deltaKind))")
        }
        var r = ByteReader(try delta.bytes(SectionKind.parameters)) { corrupt("too short") }
        var values: [UInt64] = []
        for _ in 0..<11 { values.append(try r.u64()) }
        guard values[0] == UInt64(base.dimension), values[1] == base.metric, values[2] == UInt64(base.m) else {
            throw corrupt("dimension, metric or m differ from the segment's: a delta of another index")
        }
        guard let n = Int(exactly: values[6]), let live = Int(exactly: values[7]), let blocks = Int(exactly: values[9]),
              n >= base.nodes, n < Int(UInt32.max), live <= n, blocks >= base.upperBlocks,
              blocks < NodeArena.maxChunks << NodeArena.chunkShift
        else { throw corrupt("inconsistent counts (nodes \(values[6]), live \(values[7]), upper blocks \(values[9]))") }
        return (n, live, values[8], blocks, values[10])
    }

    /// Copies `delta`'s patches into the arenas (already holding the base
    /// segment's records and reserved for the delta's counts), checking each
    /// record with its section's validator, and marks them changed, so the
    /// next delta carries them again. With `codes` (the base segment holds
    /// neighbour codes and the delta a patch of them), that patch too.
    func applyDelta(_ delta: MappedSegment, nodes n: Int, upperBlocks: Int,
                    validators: [UInt32: (UnsafeRawPointer, UInt32, Int) -> String?], codes: Bool) throws(LodestoneError)
    {
        reserveNodes(n)
        upperLinks.reserve(upperBlocks)
        if codes {
            neighbourCodes?.blocks.reserve(n)
            compactCodes?.records.reserve(n)
        }
        for (arena, kind, count) in patchedArenas(nodes: n, upperBlocks: upperBlocks, codes: codes) {
            let patch = HNSWIndex.patchKind(kind)
            let entry = try delta.entry(patch)
            func corrupt(_ reason: String) -> LodestoneError {
                .corruptSegment(path: delta.path, section: "patch of \(SectionKind.name(kind))", reason: reason)
            }
            guard entry.stride == 4 + arena.stride else { throw corrupt("stride \(entry.stride), expected \(4 + arena.stride)") }
            let p = try delta.records(patch, stride: entry.stride, count: entry.count)
            var previous: Int64 = -1
            for i in 0..<entry.count {
                let record = p + i * entry.stride
                let id = UInt32(littleEndian: record.loadUnaligned(as: UInt32.self))
                guard Int(id) < count, Int64(id) > previous else {
                    throw corrupt("record \(id) is out of order or beyond the \(count) records")
                }
                previous = Int64(id)
                if let valid = validators[kind], let reason = valid(record + 4, id, 1) { throw corrupt(reason) }
                arena.markDirty(id)
                arena.record(id).copyMemory(from: record + 4, byteCount: arena.stride)
            }
        }
        if let failure = corruption() { throw failure }
    }
}
