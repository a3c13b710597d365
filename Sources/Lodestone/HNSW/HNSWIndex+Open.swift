import CLodestoneKernels
import Synchronization

// Opening a persisted index: mapping its segment (and delta), checking the
// small sections, and adopting the large ones to be verified chunk by chunk.

extension HNSWIndex {
    /// Opens an index persisted with ``persist(to:compact:)``: the file is mapped
    /// copy-on-write and its vectors and links are used in place; nothing is
    /// recomputed, and opening reads only the header, the directory and the
    /// small sections, so it costs about the same whatever the index's size.
    /// Each 4,096-record chunk is verified (checksum, then bounds of every
    /// link) the first time a search or write touches it; a chunk that fails
    /// makes searches throw ``LodestoneError/corruptSegment(path:section:reason:)``
    /// rather than answer from it. ``verify()`` checks everything at once.
    /// The index stays writable: changes live in memory until the next
    /// ``persist(to:compact:)``.
    /// - Throws: ``LodestoneError/corruptSegment(path:section:reason:)`` naming
    ///   the part at fault, ``LodestoneError/unsupportedFormatVersion(path:found:supported:)``,
    ///   or ``LodestoneError/io(path:operation:errno:)``.
    public static func open(path: String, kernels: DistanceKernels = .active) throws(LodestoneError) -> HNSWIndex {
        try open(path: path, delta: nil, kernels: kernels)
    }

    /// Opens the segment at `path` with the mapped delta file `delta` (written
    /// by ``persistDelta(to:extraSections:)`` against that segment) applied:
    /// the delta's records are copied over the segment's (in the private
    /// mapping) and stay marked as changed.
    static func open(path: String, delta: MappedSegment?, kernels: DistanceKernels = .active)
        throws(LodestoneError) -> HNSWIndex
    {
        let segment = try MappedSegment(path: path)
        guard segment.indexKind == segmentKind else {
            throw .corruptSegment(path: path, section: "header",
                                  reason: "index kind \(segment.indexKind) is not an HNSW index (2)")
        }
        let stored = try StoredParameters(segment)
        let n = stored.nodes, upperBlocks = stored.upperBlocks
        // With a delta, its counts are the index's; the segment's records
        // are the first `n` of them.
        var final = (nodes: n, live: stored.live, entry: stored.entry, upperBlocks: upperBlocks,
                     insertions: stored.insertions)
        if let delta {
            final = try deltaCounts(delta, base: (stored.dimension, stored.metric.storageCode, stored.m, n, upperBlocks))
        }
        let index: HNSWIndex
        do {
            index = try HNSWIndex(dimension: stored.dimension, metric: stored.metric,
                                  parameters: HNSWParameters(m: stored.m, efConstruction: stored.efConstruction,
                                                             efSearch: stored.efSearch, seed: stored.seed,
                                                             traversal: stored.traversal),
                                  embeddingModel: segment.embeddingModel, kernels: kernels)
        } catch {
            throw .corruptSegment(path: path, section: "parameters", reason: "\(error)")
        }
        index.segment = segment
        let fail: (String) -> (String) -> Void = { section in
            { [weak index] reason in index?.recordCorruption(.corruptSegment(path: path, section: section, reason: reason)) }
        }
        let valid = ChunkValidators(index, nodes: UInt32(final.nodes), upperBlocks: final.upperBlocks)
        @discardableResult
        func adopt(_ arena: NodeArena, _ kind: UInt32, count: Int, _ valid: ChunkValidators.Check?,
                   recordChecksums: NodeArena? = nil) throws(LodestoneError) -> UnsafeMutableRawPointer {
            let base = try segment.records(kind, stride: arena.stride, count: count)
            arena.adoptLazily(base, records: count, chunkChecksums: try segment.checksums(kind),
                              recordChecksums: recordChecksums, validate: valid, onFailure: fail(SectionKind.name(kind)))
            return base
        }
        // A compact index reads vectors for its finalists only: record by
        // record, each verified alone, without read-ahead.
        var vectorChecksums: NodeArena? = nil
        if index.compactCodes != nil, segment.has(SectionKind.hnswVectorChecksums) {
            vectorChecksums = NodeArena(stride: 4)
            try adopt(vectorChecksums!, SectionKind.hnswVectorChecksums, count: n, nil)
        }
        let vectorBase = try adopt(index.vectors, SectionKind.vectors, count: n, nil, recordChecksums: vectorChecksums)
        if index.vectors.verifiesRecords { SystemCalls.adviseRandom(vectorBase, size: n * index.vectors.stride) }
        try adopt(index.keyRecords, SectionKind.keys, count: n, nil)
        try adopt(index.states, SectionKind.states, count: n, valid.states)
        try adopt(index.links0, SectionKind.hnswLinks0, count: n, valid.links0)
        try adopt(index.levelRecords, SectionKind.hnswLevels, count: n, valid.levels)
        try adopt(index.upperStart, SectionKind.hnswUpperStart, count: n, valid.upperStart)
        try adopt(index.upperLinks, SectionKind.hnswUpperLinks, count: upperBlocks, valid.upperLinks)
        // Neighbour codes: used in place when the segment has them (and,
        // with a delta, the delta patches them); otherwise the first search
        // or write encodes them.
        var codesReady = false
        if let codes = index.neighbourCodes, segment.has(SectionKind.hnswNeighbourCodes) {
            try adopt(codes.blocks, SectionKind.hnswNeighbourCodes, count: n, valid.codes)
            codes.inBase = true
            codesReady = true
        }
        // Compact codes: their center, then the codes in place; without
        // the codes, the first search or write encodes them (with the
        // persisted center, if any).
        if let compact = index.compactCodes, segment.has(SectionKind.hnswCompactCenter) {
            compact.adopt(center: try compactCenter(segment, dimension: stored.dimension))
            if segment.has(SectionKind.hnswCompactCodes) {
                try adopt(compact.records, SectionKind.hnswCompactCodes, count: n, nil)
                compact.inBase = true
                codesReady = true
            }
        }
        if let delta {
            // A delta without a patch of the codes leaves them stale.
            let kind = index.compactCodes == nil ? SectionKind.hnswNeighbourCodes : SectionKind.hnswCompactCodes
            codesReady = codesReady && delta.has(HNSWIndex.patchKind(kind))
            try index.applyDelta(delta, nodes: final.nodes, upperBlocks: final.upperBlocks, validators: valid.byKind,
                                 codes: codesReady)
        }
        // The lists of removed nodes are the delta's when there is one.
        let lists = delta ?? segment
        let removed = try index.removedLists(lists, nodes: final.nodes, upperBlocks: final.upperBlocks)
        if final.entry != 0 {
            let e = UInt32(truncatingIfNeeded: final.entry), top = Int(final.entry >> 32) - 1
            guard Int(e) < final.nodes, top == index.level(e) else {
                // Reading the entry's level verifies its chunk: a damaged
                // levels section is the better diagnosis.
                throw index.corruption() ?? .corruptSegment(path: lists.path, section: "parameters",
                                                            reason: "entry point \(e) at level \(top) is invalid")
            }
        } else if final.live > 0 {
            throw .corruptSegment(path: lists.path, section: "parameters", reason: "no entry point but \(final.live) live nodes")
        }
        if let failure = index.corruption() { throw failure }
        index.writer.withLock { w in
            w.upperBlocks = final.upperBlocks
            w.insertions = final.insertions
            w.tombstones = removed.tombstones
            w.free = removed.free.map { (node: $0, epoch: 0) }
            w.freeUpperRuns = removed.freeUpperRuns
            w.keysBuilt = false  // built from the keys section on first use
        }
        index.entry.store(final.entry, ordering: .releasing)
        index.nodeCount.store(final.nodes, ordering: .releasing)
        if final.nodes > 0 && !codesReady { index.neighbourCodes?.ready.store(false, ordering: .releasing) }
        if codesReady { index.compactCodes?.ready.store(true, ordering: .releasing) }
        index.liveCount.store(final.live, ordering: .releasing)
        index.deadCount.store(removed.free.count + removed.tombstones.count, ordering: .releasing)
        return index
    }

    /// The compact traversal's center: `dimension` finite Float32s.
    private static func compactCenter(_ segment: MappedSegment, dimension: Int) throws(LodestoneError) -> [Float] {
        let bytes = try segment.bytes(SectionKind.hnswCompactCenter)
        let center = stride(from: 0, to: bytes.count - bytes.count % 4, by: 4).map {
            Float(bitPattern: UInt32(bytes[$0]) | UInt32(bytes[$0 + 1]) << 8 | UInt32(bytes[$0 + 2]) << 16
                  | UInt32(bytes[$0 + 3]) << 24)
        }
        guard bytes.count == 4 * dimension, center.allSatisfy(\.isFinite) else {
            throw .corruptSegment(path: segment.path, section: SectionKind.name(SectionKind.hnswCompactCenter),
                                  reason: "not \(dimension) finite Float32 components")
        }
        return center
    }

    /// The `parameters` section of an HNSW segment (FORMAT.md), checked for
    /// values an index can hold.
    struct StoredParameters {
        var dimension: Int, metric: Metric, m: Int, efConstruction: Int, efSearch: Int, seed: UInt64
        var nodes: Int, live: Int, entry: UInt64, upperBlocks: Int, insertions: UInt64
        var traversal: HNSWParameters.Traversal

        init(_ segment: MappedSegment) throws(LodestoneError) {
            let path = segment.path
            func corrupt(_ reason: String) -> LodestoneError {
                .corruptSegment(path: path, section: "parameters", reason: reason)
            }
            var reader = ByteReader(try segment.bytes(SectionKind.parameters)) { corrupt("too short") }
            func int() throws(LodestoneError) -> Int {
                guard let v = Int(exactly: try reader.u64()), v <= 1 << 40 else { throw corrupt("absurd value") }
                return v
            }
            let dimension = try int(), metricCode = try reader.u64()
            m = try int(); efConstruction = try int(); efSearch = try int()
            seed = try reader.u64()
            let n = try int(), live = try int()
            entry = try reader.u64(); upperBlocks = try int(); insertions = try reader.u64()
            // Format 1.1 adds the traversal; a 1.0 file's index walks exactly.
            let traversalCode = reader.remaining >= 8 ? try reader.u64() : 0
            guard let traversal = HNSWParameters.Traversal(storageCode: traversalCode) else {
                throw corrupt("unknown traversal \(traversalCode)")
            }
            let maxRecords = NodeArena.maxChunks << NodeArena.chunkShift
            guard n < maxRecords, upperBlocks < maxRecords else {
                throw corrupt("\(n) nodes and \(upperBlocks) upper blocks exceed what an index can hold")
            }
            guard let metric = Metric(storageCode: metricCode) else { throw corrupt("unknown metric \(metricCode)") }
            guard dimension > 0 && dimension <= 1 << 16, n >= 0, n < Int(UInt32.max), live <= n, upperBlocks >= 0 else {
                throw corrupt("inconsistent counts (dimension \(dimension), nodes \(n), live \(live))")
            }
            self.dimension = dimension
            self.metric = metric
            self.traversal = traversal
            self.nodes = n
            self.live = live
        }
    }

    /// What each section's chunks are checked for on first use, after their
    /// checksum: that every value a search follows stays in bounds.
    struct ChunkValidators {
        /// (first record, its number, records) -> what is wrong, or nil.
        typealias Check = (UnsafeRawPointer, UInt32, Int) -> String?
        let links0: Check, upperLinks: Check, levels: Check, states: Check, upperStart: Check, codes: Check

        init(_ index: HNSWIndex, nodes: UInt32, upperBlocks blocks: Int) {
            // Records of `perRecord` UInt32 whose first `ids` are node ids:
            // each below the node count or empty; `describe(record, id)`
            // says which is not.
            func idsBelowNodes(perRecord: Int, ids: Int, _ describe: @escaping (UInt32, UInt32) -> String) -> Check {
                { p, first, count in
                    let words = p.assumingMemoryBound(to: UInt32.self)
                    for r in 0..<count {
                        for j in 0..<ids {
                            let id = words[r * perRecord + j]
                            if id != HNSWIndex.noNode && id >= nodes { return describe(first + UInt32(r), id) }
                        }
                    }
                    return nil
                }
            }
            links0 = idsBelowNodes(perRecord: index.m0, ids: index.m0) { "node \($0) links to \($1) ≥ \(nodes)" }
            upperLinks = idsBelowNodes(perRecord: index.m, ids: index.m) { "block \($0) links to \($1) ≥ \(nodes)" }
            levels = { p, first, count in
                let levels = p.assumingMemoryBound(to: UInt8.self)
                for i in 0..<count where levels[i] > 30 { return "node \(first + UInt32(i)) has level \(levels[i])" }
                return nil
            }
            states = { p, first, count in
                let states = p.assumingMemoryBound(to: UInt8.self)
                for i in 0..<count where states[i] > 2 { return "node \(first + UInt32(i)) has state \(states[i])" }
                return nil
            }
            upperStart = { [unowned index] p, first, count in
                let starts = p.assumingMemoryBound(to: UInt32.self)
                for i in 0..<count {
                    let lvl = index.level(first + UInt32(i))
                    if lvl > 0 && Int(starts[i]) + lvl > blocks {
                        return "node \(first + UInt32(i))'s blocks \(starts[i])..<\(Int(starts[i]) + lvl) exceed \(blocks)"
                    }
                }
                return nil
            }
            codes = idsBelowNodes(perRecord: (index.neighbourCodes?.blocks.stride ?? 0) / 4,
                                  ids: index.neighbourCodes.map { lodestone_qg_batches($0.slots) * 32 } ?? 0) {
                "node \($0)'s block names node \($1) ≥ \(nodes)"
            }
        }

        /// The checks by section kind, for a delta's patches.
        var byKind: [UInt32: Check] {
            [SectionKind.states: states, SectionKind.hnswLevels: levels, SectionKind.hnswLinks0: links0,
             SectionKind.hnswUpperStart: upperStart, SectionKind.hnswUpperLinks: upperLinks,
             SectionKind.hnswNeighbourCodes: codes]
        }
    }

    /// The removed-node lists (free and tombstoned nodes, each in the state
    /// its list says, once) and the free runs of upper-layer blocks, read
    /// from `lists` (the delta when there is one, else the segment).
    private func removedLists(_ lists: MappedSegment, nodes: Int, upperBlocks: Int)
        throws(LodestoneError) -> (free: [UInt32], tombstones: [UInt32], freeUpperRuns: [Int: [UInt32]])
    {
        let freeIDs = try HNSWIndex.idList(lists, SectionKind.free, nodes: nodes)
        let tombstones = try HNSWIndex.idList(lists, SectionKind.hnswTombstones, nodes: nodes)
        var listed = Set<UInt32>()
        for (ids, expected, name) in [(freeIDs, State.unused, "free"), (tombstones, State.deleted, "hnsw.tombstones")] {
            for id in ids {
                guard listed.insert(id).inserted, state(id) == expected else {
                    throw corruption() ?? .corruptSegment(path: lists.path, section: name,
                                                         reason: "node \(id) is listed twice or is not \(expected)")
                }
            }
        }
        func corruptRuns(_ reason: String) -> LodestoneError {
            .corruptSegment(path: lists.path, section: "hnsw.free-upper-runs", reason: reason)
        }
        let runBytes = try lists.bytes(SectionKind.hnswFreeUpperRuns)
        guard runBytes.count % 8 == 0 else { throw corruptRuns("not a list of (length, start) pairs") }
        var freeUpperRuns: [Int: [UInt32]] = [:]
        var runReader = ByteReader(runBytes) { corruptRuns("truncated") }
        for _ in 0..<(runBytes.count / 8) {
            let length = Int(try runReader.u32()), start = try runReader.u32()
            guard length >= 1 && length <= 30, Int(start) + length <= upperBlocks else {
                throw corruptRuns("run of \(length) blocks at \(start) is outside \(upperBlocks) blocks")
            }
            freeUpperRuns[length, default: []].append(start)
        }
        return (freeIDs, tombstones, freeUpperRuns)
    }

    /// Verifies everything an open leaves for later: every chunk of every
    /// section (checksum and content) and every section's whole checksum.
    /// - Throws: ``LodestoneError/corruptSegment(path:section:reason:)``.
    public func verify() throws(LodestoneError) {
        warm(threads: 1)
        vectors.verifyAll()  // and the vectors warming leaves on disk (a compact index's)
        writer.withLock { w in ensureKeys(&w) }
        if let failure = corruption() { throw failure }
        if let codes = neighbourCodes, codes.isReady, let node = firstBlockNotMirroringLinks(codes) {
            throw .corruptSegment(path: segment?.path ?? "", section: SectionKind.name(SectionKind.hnswNeighbourCodes),
                                  reason: "node \(node)'s block does not hold its layer-0 links")
        }
        if let codes = compactCodes, codes.isReady, let node = firstCodeNotMatchingVector(codes) {
            throw .corruptSegment(path: segment?.path ?? "", section: SectionKind.name(SectionKind.hnswCompactCodes),
                                  reason: "node \(node)'s code is not its vector's")
        }
        // Chunked sections were checked chunk by chunk above (the mapping may
        // hold this index's own later writes); the others are checked whole.
        try segment?.verifyUnchunkedSections()
    }

    /// Verifies (and so maps in) every chunk of every section now, on
    /// `threads` threads: what searches over the whole index would touch
    /// one chunk at a time.
    func warm(threads: Int) {
        // Levels before upper-start, whose check reads them. Vectors read
        // one at a time (a compact index's: only finalists are read, each
        // verified then) stay on disk.
        for arena in [levelRecords, states, keyRecords, links0, upperStart, upperLinks, vectors]
        where !arena.verifiesRecords {
            arena.verifyAll(threads: threads)
        }
        if let codes = neighbourCodes, codes.inBase { codes.blocks.verifyAll(threads: threads) }
        if let codes = compactCodes, codes.inBase { codes.records.verifyAll(threads: threads) }
    }

    static func idList(_ segment: MappedSegment, _ kind: UInt32, nodes n: Int) throws(LodestoneError) -> [UInt32] {
        let bytes = try segment.bytes(kind)
        guard bytes.count % 4 == 0 else {
            throw .corruptSegment(path: segment.path, section: SectionKind.name(kind), reason: "not a list of UInt32 ids")
        }
        var ids: [UInt32] = []
        for i in stride(from: 0, to: bytes.count, by: 4) {
            let id = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            guard Int(id) < n else {
                throw .corruptSegment(path: segment.path, section: SectionKind.name(kind), reason: "node id \(id) ≥ \(n)")
            }
            ids.append(id)
        }
        return ids
    }
}
