import CLodestoneKernels
import Synchronization

extension HNSWIndex {
    static let segmentKind: UInt32 = 2

    /// The `parameters` section (FORMAT.md) for the given counts.
    func parameterBytes(nodes: Int, live: Int, entry entryWord: UInt64, upperBlocks: Int, insertions: UInt64) -> [UInt8] {
        var w = ByteWriter()
        for v in [UInt64(dimension), metric.storageCode, UInt64(m), UInt64(parameters.efConstruction),
                  UInt64(parameters.efSearch), parameters.seed, UInt64(nodes), UInt64(live), entryWord,
                  UInt64(upperBlocks), insertions, parameters.traversal.storageCode] {
            w.u64(v)
        }
        return w.bytes
    }

    /// Writes the index to a segment file at `path` (atomically: a reader
    /// of `path` sees the old file or the new one, never a mix). Searches
    /// may run meanwhile; writers wait.
    ///
    /// The format is described in `Sources/Lodestone/Storage/FORMAT.md`.
    ///
    /// - Parameters:
    ///   - path: the file to write (replaced atomically).
    ///   - compact: when true and nodes have been removed, first unlink
    ///     every removed node, then write only the live nodes, renumbered
    ///     densely with their links remapped: the file drops removed rows
    ///     (this instance keeps its numbering; the file's takes effect when
    ///     opened).
    public func persist(to path: String, compact: Bool = false) throws(LodestoneError) {
        try persist(to: path, compact: compact, extraSections: [])
    }

    /// ``persist(to:compact:)`` with sections of the owner's (an ``Index``'s
    /// records) written into the same segment.
    func persist(to path: String, compact: Bool, extraSections: [PendingSection]) throws(LodestoneError) {
        try writer.withLock { (w: inout WriterState) throws(LodestoneError) in
            if compact && deadCount.load(ordering: .acquiring) > 0 {
                try persistCompactedLocked(&w, path: path, extraSections: extraSections)
                return
            }
            let n = nodeCount.load(ordering: .acquiring)
            // Blocks are written when they exist (else a reopened index
            // encodes them before its first search).
            let codes = neighbourCodes.flatMap { $0.isReady ? $0 : nil }
            neighbourCodes?.inLastPersist = codes != nil
            let sections = segmentSections(
                parameters: parameterBytes(nodes: n, live: liveCount.load(ordering: .acquiring),
                                           entry: entry.load(ordering: .acquiring), upperBlocks: w.upperBlocks,
                                           insertions: w.insertions),
                nodes: n, upperBlocks: w.upperBlocks,
                vectors: .ranges(vectors.byteRanges(records: n)), keys: .ranges(keyRecords.byteRanges(records: n)),
                states: .ranges(states.byteRanges(records: n)), links0: .ranges(links0.byteRanges(records: n)),
                levels: .ranges(levelRecords.byteRanges(records: n)),
                upperStart: .ranges(upperStart.byteRanges(records: n)),
                upperLinks: .ranges(upperLinks.byteRanges(records: w.upperBlocks)),
                free: w.free.map(\.node), tombstones: w.tombstones, freeUpperRuns: Self.runPairs(w.freeUpperRuns),
                codes: codes.map { .ranges($0.blocks.byteRanges(records: n)) })
            // Reading the sections verified any chunk not read before: never
            // write fill bytes over damage with fresh checksums.
            if let failure = corruption() { throw failure }
            try SegmentWriter.write(path: path, indexKind: HNSWIndex.segmentKind, embeddingModel: embeddingModel,
                                    sections: sections + extraSections)
        }
    }

    /// Free upper-block runs as (length, start) pairs, by length.
    static func runPairs(_ runs: [Int: [UInt32]]) -> [UInt32] {
        runs.sorted { $0.key < $1.key }.flatMap { run in run.value.flatMap { [UInt32(run.key), $0] } }
    }

    /// The sections listing removed nodes and freed upper blocks (FORMAT.md).
    static func removedNodeSections(free: [UInt32], tombstones: [UInt32], freeUpperRuns runs: [UInt32]) -> [PendingSection] {
        [PendingSection(kind: SectionKind.free, codec: .lz4, stride: 4, count: free.count, owned: free),
         PendingSection(kind: SectionKind.hnswTombstones, codec: .lz4, stride: 4, count: tombstones.count, owned: tombstones),
         PendingSection(kind: SectionKind.hnswFreeUpperRuns, codec: .lz4, stride: 8, count: runs.count / 2, owned: runs)]
    }

    /// ``removedNodeSections(free:tombstones:freeUpperRuns:)`` as the writer state has them now.
    func removedNodeSections(_ w: WriterState) -> [PendingSection] {
        Self.removedNodeSections(free: w.free.map(\.node), tombstones: w.tombstones, freeUpperRuns: Self.runPairs(w.freeUpperRuns))
    }

    /// Where a section's bytes come from.
    enum SectionPart {
        /// Records read in place (arena chunks).
        case ranges([UnsafeRawBufferPointer])
        /// An array built for the write.
        case owned(any SectionBytes)
    }

    /// The sections of an HNSW segment (FORMAT.md), shared by the plain and
    /// the compacting persist.
    private func segmentSections(
        parameters: [UInt8], nodes n: Int, upperBlocks: Int, vectors v: SectionPart, keys: SectionPart,
        states s: SectionPart, links0 l0: SectionPart, levels: SectionPart, upperStart us: SectionPart,
        upperLinks ul: SectionPart, free: [UInt32], tombstones: [UInt32], freeUpperRuns runs: [UInt32],
        codes: SectionPart?
    ) -> [PendingSection] {
        func section(_ kind: UInt32, stride: Int, count: Int, _ part: SectionPart, codec: SectionCodec = .raw,
                     chunked: Bool = true) -> PendingSection {
            switch part {
            case let .ranges(pieces):
                return PendingSection(kind: kind, codec: codec, stride: stride, count: count, pieces: pieces, chunked: chunked)
            case let .owned(bytes):
                return PendingSection(kind: kind, codec: codec, stride: stride, count: count, owned: bytes, chunked: chunked)
            }
        }
        return [
            section(SectionKind.parameters, stride: 0, count: 0, .owned(parameters), chunked: false),
            section(SectionKind.vectors, stride: vectors.stride, count: n, v),
            section(SectionKind.keys, stride: 8, count: n, keys),
            section(SectionKind.states, stride: 1, count: n, s),
            section(SectionKind.hnswLinks0, stride: links0.stride, count: n, l0),
            section(SectionKind.hnswLevels, stride: 1, count: n, levels),
            section(SectionKind.hnswUpperStart, stride: 4, count: n, us),
            section(SectionKind.hnswUpperLinks, stride: upperLinks.stride, count: upperBlocks, ul),
        ] + (codes.map { [section(SectionKind.hnswNeighbourCodes, stride: neighbourCodes!.blocks.stride, count: n, $0)] } ?? [])
            + Self.removedNodeSections(free: free, tombstones: tombstones, freeUpperRuns: runs)
    }

    /// Writes only the live nodes, renumbered densely (see `persist(to:compact:)`).
    private func persistCompactedLocked(_ w: inout WriterState, path: String, extraSections: [PendingSection])
        throws(LodestoneError)
    {
        prepareNeighbourCodesLocked()
        purgeLocked(&w)  // now no live node links to a removed one
        // Blocks name neighbours by their old numbers: a reopened index
        // encodes them again.
        neighbourCodes?.inLastPersist = false
        let n = nodeCount.load(ordering: .acquiring)
        var newID = [UInt32](repeating: HNSWIndex.noNode, count: n)
        var live: [UInt32] = []
        for id in 0..<UInt32(n) where state(id) == .live {
            newID[Int(id)] = UInt32(live.count)
            live.append(id)
        }
        let count = live.count
        // Vectors and keys are written straight from the arenas, in runs of
        // consecutive live ids within one chunk.
        var runs: [(start: UInt32, length: Int)] = []
        for id in live {
            if let last = runs.last, last.start + UInt32(last.length) == id,
               id >> UInt32(NodeArena.chunkShift) == last.start >> UInt32(NodeArena.chunkShift) {
                runs[runs.count - 1].length += 1
            } else {
                runs.append((id, 1))
            }
        }
        let vectorPieces = runs.map { UnsafeRawBufferPointer(start: vectors.record($0.start), count: $0.length * vectors.stride) }
        let keyPieces = runs.map { UnsafeRawBufferPointer(start: keyRecords.record($0.start), count: $0.length * 8) }
        let stateBytes = [UInt8](repeating: State.live.rawValue, count: count)
        let levelBytes = live.map { UInt8(level($0)) }
        var links0Out = [UInt32](repeating: HNSWIndex.noNode, count: count * m0)
        var upperStartOut = [UInt32](repeating: 0, count: count)
        var upperOut: [UInt32] = []
        func remap(_ slots: UnsafeMutablePointer<UInt32>, capacity: Int, into out: inout [UInt32], at base: Int) {
            var k = 0
            for j in 0..<capacity {
                let nb = lodestone_load_u32(slots + j)
                if nb == HNSWIndex.noNode { break }
                let mapped = newID[Int(nb)]
                if mapped != HNSWIndex.noNode {
                    out[base + k] = mapped
                    k += 1
                }
            }
        }
        for (i, id) in live.enumerated() {
            remap(links(id, layer: 0), capacity: m0, into: &links0Out, at: i * m0)
            let lvl = level(id)
            if lvl > 0 {
                upperStartOut[i] = UInt32(upperOut.count / m)
                for layer in 1...lvl {
                    let base = upperOut.count
                    upperOut += [UInt32](repeating: HNSWIndex.noNode, count: m)
                    remap(links(id, layer: layer), capacity: m, into: &upperOut, at: base)
                }
            }
        }
        let e = entry.load(ordering: .acquiring)
        var newEntry: UInt64 = 0
        if e != 0 {
            let mapped = newID[Int(UInt32(truncatingIfNeeded: e))]
            precondition(mapped != HNSWIndex.noNode, "the entry point is live after a purge")
            newEntry = (e & 0xFFFF_FFFF_0000_0000) | UInt64(mapped)
        }
        let upperBlocks = upperOut.count / m
        let sections = segmentSections(
            parameters: parameterBytes(nodes: count, live: count, entry: newEntry, upperBlocks: upperBlocks,
                                       insertions: w.insertions),
            nodes: count, upperBlocks: upperBlocks, vectors: .ranges(vectorPieces), keys: .ranges(keyPieces),
            states: .owned(stateBytes), links0: .owned(links0Out), levels: .owned(levelBytes),
            upperStart: .owned(upperStartOut), upperLinks: .owned(upperOut), free: [], tombstones: [], freeUpperRuns: [],
            codes: nil)
        if let failure = corruption() { throw failure }
        try SegmentWriter.write(path: path, indexKind: HNSWIndex.segmentKind, embeddingModel: embeddingModel,
                                sections: sections + extraSections)
    }

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
        func corrupt(_ section: String, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: section, reason: reason)
        }
        guard segment.indexKind == segmentKind else {
            throw corrupt("header", "index kind \(segment.indexKind) is not an HNSW index (2)")
        }
        var reader = ByteReader(try segment.bytes(SectionKind.parameters)) { corrupt("parameters", "too short") }
        func int() throws(LodestoneError) -> Int {
            guard let v = Int(exactly: try reader.u64()), v <= 1 << 40 else { throw corrupt("parameters", "absurd value") }
            return v
        }
        let dimension = try int(), metricCode = try reader.u64()
        let m = try int(), efc = try int(), efs = try int()
        let seed = try reader.u64()
        let n = try int(), live = try int()
        let entryWord = try reader.u64(), upperBlocks = try int(), insertions = try reader.u64()
        // Format 1.1 adds the traversal; a 1.0 file's index walks exactly.
        let traversalCode = reader.remaining >= 8 ? try reader.u64() : 0
        guard let traversal = HNSWParameters.Traversal(storageCode: traversalCode) else {
            throw corrupt("parameters", "unknown traversal \(traversalCode)")
        }
        let maxRecords = NodeArena.maxChunks << NodeArena.chunkShift
        guard n < maxRecords, upperBlocks < maxRecords else {
            throw corrupt("parameters", "\(n) nodes and \(upperBlocks) upper blocks exceed what an index can hold")
        }
        guard let metric = Metric(storageCode: metricCode) else { throw corrupt("parameters", "unknown metric \(metricCode)") }
        guard dimension > 0 && dimension <= 1 << 16, n >= 0, n < Int(UInt32.max), live <= n, upperBlocks >= 0 else {
            throw corrupt("parameters", "inconsistent counts (dimension \(dimension), nodes \(n), live \(live))")
        }
        // With a delta, its counts are the index's; the segment's records
        // are the first `n` of them.
        var final = (nodes: n, live: live, entry: entryWord, upperBlocks: upperBlocks, insertions: insertions)
        if let delta {
            final = try deltaCounts(delta, base: (dimension, metricCode, m, n, upperBlocks))
        }
        let index: HNSWIndex
        do {
            index = try HNSWIndex(dimension: dimension, metric: metric,
                                  parameters: HNSWParameters(m: m, efConstruction: efc, efSearch: efs, seed: seed,
                                                             traversal: traversal),
                                  embeddingModel: segment.embeddingModel, kernels: kernels)
        } catch {
            throw corrupt("parameters", "\(error)")
        }
        index.segment = segment
        let fail: (String) -> (String) -> Void = { section in
            { [weak index] reason in index?.recordCorruption(.corruptSegment(path: path, section: section, reason: reason)) }
        }
        let nodes = UInt32(final.nodes), blocks = final.upperBlocks
        // Each chunk is checked on first use: its checksum, then that every
        // value a search follows stays in bounds.
        // Records of `perRecord` UInt32 whose first `ids` are node ids:
        // each below the node count or empty; `describe(record, id)` says
        // which is not.
        func idsBelowNodes(perRecord: Int, ids: Int, _ describe: @escaping (UInt32, UInt32) -> String)
            -> (UnsafeRawPointer, UInt32, Int) -> String?
        {
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
        let linksValid = idsBelowNodes(perRecord: index.m0, ids: index.m0) { "node \($0) links to \($1) ≥ \(nodes)" }
        let upperValid = idsBelowNodes(perRecord: index.m, ids: index.m) { "block \($0) links to \($1) ≥ \(nodes)" }
        let levelsValid: (UnsafeRawPointer, UInt32, Int) -> String? = { p, first, count in
            let levels = p.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count where levels[i] > 30 { return "node \(first + UInt32(i)) has level \(levels[i])" }
            return nil
        }
        let statesValid: (UnsafeRawPointer, UInt32, Int) -> String? = { p, first, count in
            let states = p.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count where states[i] > 2 { return "node \(first + UInt32(i)) has state \(states[i])" }
            return nil
        }
        let upperStartValid: (UnsafeRawPointer, UInt32, Int) -> String? = { [unowned index] p, first, count in
            let starts = p.assumingMemoryBound(to: UInt32.self)
            for i in 0..<count {
                let lvl = index.level(first + UInt32(i))
                if lvl > 0 && Int(starts[i]) + lvl > blocks {
                    return "node \(first + UInt32(i))'s blocks \(starts[i])..<\(Int(starts[i]) + lvl) exceed \(blocks)"
                }
            }
            return nil
        }
        func adopt(_ arena: NodeArena, _ kind: UInt32, count: Int, _ valid: ((UnsafeRawPointer, UInt32, Int) -> String?)?)
            throws(LodestoneError)
        {
            arena.adoptLazily(try segment.records(kind, stride: arena.stride, count: count), records: count,
                              chunkChecksums: try segment.checksums(kind), validate: valid,
                              onFailure: fail(SectionKind.name(kind)))
        }
        try adopt(index.vectors, SectionKind.vectors, count: n, nil)
        try adopt(index.keyRecords, SectionKind.keys, count: n, nil)
        try adopt(index.states, SectionKind.states, count: n, statesValid)
        try adopt(index.links0, SectionKind.hnswLinks0, count: n, linksValid)
        try adopt(index.levelRecords, SectionKind.hnswLevels, count: n, levelsValid)
        try adopt(index.upperStart, SectionKind.hnswUpperStart, count: n, upperStartValid)
        try adopt(index.upperLinks, SectionKind.hnswUpperLinks, count: upperBlocks, upperValid)
        // Neighbour codes: used in place when the segment has them (and,
        // with a delta, the delta patches them); otherwise the first search
        // or write encodes them.
        var codesReady = false
        let codesValid = idsBelowNodes(perRecord: (index.neighbourCodes?.blocks.stride ?? 0) / 4,
                                       ids: index.neighbourCodes.map { lodestone_qg_batches($0.slots) * 32 } ?? 0) {
            "node \($0)'s block names node \($1) ≥ \(nodes)"
        }
        if let codes = index.neighbourCodes, segment.has(SectionKind.hnswNeighbourCodes) {
            try adopt(codes.blocks, SectionKind.hnswNeighbourCodes, count: n, codesValid)
            codes.inBase = true
            codesReady = true
        }
        if let delta {
            // A delta without a patch of the blocks leaves them stale.
            codesReady = codesReady && delta.has(HNSWIndex.patchKind(SectionKind.hnswNeighbourCodes))
            try index.applyDelta(delta, nodes: final.nodes, upperBlocks: final.upperBlocks, validators: [
                SectionKind.states: statesValid, SectionKind.hnswLevels: levelsValid, SectionKind.hnswLinks0: linksValid,
                SectionKind.hnswUpperStart: upperStartValid, SectionKind.hnswUpperLinks: upperValid,
                SectionKind.hnswNeighbourCodes: codesValid,
            ], codes: codesReady)
        }
        // The lists of removed nodes are the delta's when there is one.
        let lists = delta ?? segment
        let freeIDs = try idList(lists, SectionKind.free, nodes: final.nodes)
        let tombstones = try idList(lists, SectionKind.hnswTombstones, nodes: final.nodes)
        // Each listed node must be in the state its list says, once.
        var listed = Set<UInt32>()
        for (ids, expected, name) in [(freeIDs, State.unused, "free"), (tombstones, State.deleted, "hnsw.tombstones")] {
            for id in ids {
                guard listed.insert(id).inserted, index.state(id) == expected else {
                    throw index.corruption() ?? .corruptSegment(path: lists.path, section: name,
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
            guard length >= 1 && length <= 30, Int(start) + length <= final.upperBlocks else {
                throw corruptRuns("run of \(length) blocks at \(start) is outside \(final.upperBlocks) blocks")
            }
            freeUpperRuns[length, default: []].append(start)
        }
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
            w.tombstones = tombstones
            w.free = freeIDs.map { (node: $0, epoch: 0) }
            w.freeUpperRuns = freeUpperRuns
            w.keysBuilt = false  // built from the keys section on first use
        }
        index.entry.store(final.entry, ordering: .releasing)
        index.nodeCount.store(final.nodes, ordering: .releasing)
        if final.nodes > 0 && !codesReady { index.neighbourCodes?.ready.store(false, ordering: .releasing) }
        index.liveCount.store(final.live, ordering: .releasing)
        index.deadCount.store(freeIDs.count + tombstones.count, ordering: .releasing)
        return index
    }

    /// Verifies everything an open leaves for later: every chunk of every
    /// section (checksum and content) and every section's whole checksum.
    /// - Throws: ``LodestoneError/corruptSegment(path:section:reason:)``.
    public func verify() throws(LodestoneError) {
        warm(threads: 1)
        writer.withLock { w in ensureKeys(&w) }
        if let failure = corruption() { throw failure }
        if let codes = neighbourCodes, codes.isReady, let node = firstBlockNotMirroringLinks(codes) {
            throw .corruptSegment(path: segment?.path ?? "", section: SectionKind.name(SectionKind.hnswNeighbourCodes),
                                  reason: "node \(node)'s block does not hold its layer-0 links")
        }
        // Chunked sections were checked chunk by chunk above (the mapping may
        // hold this index's own later writes); the others are checked whole.
        try segment?.verifyUnchunkedSections()
    }

    /// Verifies (and so maps in) every chunk of every section now, on
    /// `threads` threads: what searches over the whole index would touch
    /// one chunk at a time.
    func warm(threads: Int) {
        // Levels before upper-start, whose check reads them.
        for arena in [levelRecords, states, keyRecords, links0, upperStart, upperLinks, vectors] {
            arena.verifyAll(threads: threads)
        }
        if let codes = neighbourCodes, codes.inBase { codes.blocks.verifyAll(threads: threads) }
    }

    private static func idList(_ segment: MappedSegment, _ kind: UInt32, nodes n: Int) throws(LodestoneError) -> [UInt32] {
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
