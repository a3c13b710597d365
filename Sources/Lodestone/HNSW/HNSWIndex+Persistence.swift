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
            // Compact codes are always written (a reopened index would
            // otherwise read every vector to encode them).
            if n > 0 { prepareCompactCodesLocked(rows: nil, count: 0) }
            let compact = compactCodes.flatMap { $0.isReady ? $0 : nil }
            compactCodes?.inLastPersist = compact != nil
            let sections = segmentSections(
                parameters: parameterBytes(nodes: n, live: liveCount.load(ordering: .acquiring),
                                           entry: entry.load(ordering: .acquiring), upperBlocks: w.upperBlocks,
                                           insertions: w.insertions),
                nodes: n, upperBlocks: w.upperBlocks,
                vectors: .spans(NodeArena.chunkRuns(records: n)), keys: .ranges(keyRecords.byteRanges(records: n)),
                states: .ranges(states.byteRanges(records: n)), links0: .ranges(links0.byteRanges(records: n)),
                levels: .ranges(levelRecords.byteRanges(records: n)),
                upperStart: .ranges(upperStart.byteRanges(records: n)),
                upperLinks: .ranges(upperLinks.byteRanges(records: w.upperBlocks)),
                free: w.free.map(\.node), tombstones: w.tombstones, freeUpperRuns: Self.runPairs(w.freeUpperRuns),
                codes: codes.map { .ranges($0.blocks.byteRanges(records: n)) },
                compact: compact.map { .ranges($0.records.byteRanges(records: n)) })
            // Reading the sections verified any chunk not read before (the
            // vectors' as they are written): never write fill bytes over
            // damage with fresh checksums.
            try checkIntact()
            try SegmentWriter.write(path: path, indexKind: HNSWIndex.segmentKind, embeddingModel: embeddingModel,
                                    sections: sections + extraSections, beforeCommit: checkIntact)
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
        /// Runs of the vectors arena's records (within one chunk each), read
        /// (and verified) only as the write reaches them, then released
        /// from memory where a file holds them.
        case spans([(start: UInt32, count: Int)])
    }

    /// Throws what a read found damaged (``corruption()``).
    func checkIntact() throws(LodestoneError) {
        if let failure = corruption() { throw failure }
    }

    /// The sections of an HNSW segment (FORMAT.md), shared by the plain and
    /// the compacting persist.
    private func segmentSections(
        parameters: [UInt8], nodes n: Int, upperBlocks: Int, vectors v: SectionPart, keys: SectionPart,
        states s: SectionPart, links0 l0: SectionPart, levels: SectionPart, upperStart us: SectionPart,
        upperLinks ul: SectionPart, free: [UInt32], tombstones: [UInt32], freeUpperRuns runs: [UInt32],
        codes: SectionPart?, compact: SectionPart?
    ) -> [PendingSection] {
        func section(_ kind: UInt32, stride: Int, count: Int, _ part: SectionPart, codec: SectionCodec = .raw,
                     chunked: Bool = true) -> PendingSection {
            switch part {
            case let .ranges(pieces):
                return PendingSection(kind: kind, codec: codec, stride: stride, count: count, pieces: pieces, chunked: chunked)
            case let .owned(bytes):
                return PendingSection(kind: kind, codec: codec, stride: stride, count: count, owned: bytes, chunked: chunked)
            case let .spans(runs):
                var section = PendingSection(kind: kind, codec: codec, stride: stride, count: count, chunked: chunked)
                section.producer = { [vectors] emit throws(LodestoneError) in
                    for run in runs {
                        let piece = vectors.span(run.start, count: run.count)
                        try emit(piece)
                        vectors.releasePages(of: piece)
                    }
                }
                return section
            }
        }
        // A compact index's vectors are read one at a time from disk: each
        // gets its own checksum (the section after them), computed as they
        // are written.
        var vectorSection = section(SectionKind.vectors, stride: vectors.stride, count: n, v)
        if compact != nil { vectorSection.recordChecksumKind = SectionKind.hnswVectorChecksums }
        return [
            section(SectionKind.parameters, stride: 0, count: 0, .owned(parameters), chunked: false),
            vectorSection,
            section(SectionKind.keys, stride: 8, count: n, keys),
            section(SectionKind.states, stride: 1, count: n, s),
            section(SectionKind.hnswLinks0, stride: links0.stride, count: n, l0),
            section(SectionKind.hnswLevels, stride: 1, count: n, levels),
            section(SectionKind.hnswUpperStart, stride: 4, count: n, us),
            section(SectionKind.hnswUpperLinks, stride: upperLinks.stride, count: upperBlocks, ul),
        ] + (codes.map { [section(SectionKind.hnswNeighbourCodes, stride: neighbourCodes!.blocks.stride, count: n, $0)] } ?? [])
            + (compact.map { [section(SectionKind.hnswCompactCenter, stride: 4, count: dimension,
                                      .owned(compactCodes!.center), chunked: false),
                              section(SectionKind.hnswCompactCodes, stride: compactCodes!.records.stride, count: n, $0)] } ?? [])
            + Self.removedNodeSections(free: free, tombstones: tombstones, freeUpperRuns: runs)
    }

    /// Writes only the live nodes, renumbered densely (see `persist(to:compact:)`).
    private func persistCompactedLocked(_ w: inout WriterState, path: String, extraSections: [PendingSection])
        throws(LodestoneError)
    {
        prepareNeighbourCodesLocked()
        if nodeCount.load(ordering: .acquiring) > 0 { prepareCompactCodesLocked(rows: nil, count: 0) }
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
        let keyPieces = runs.map { keyRecords.span($0.start, count: $0.length) }
        // A compact code depends on its vector alone: the codes move with
        // them. The file's numbering is not this instance's, so no delta
        // follows it (as for the blocks).
        let compact = compactCodes.flatMap { $0.isReady ? $0 : nil }
        compactCodes?.inLastPersist = false
        let compactPieces = compact.map { codes in
            runs.map { codes.records.span($0.start, count: $0.length) }
        }
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
            nodes: count, upperBlocks: upperBlocks, vectors: .spans(runs.map { ($0.start, $0.length) }), keys: .ranges(keyPieces),
            states: .owned(stateBytes), links0: .owned(links0Out), levels: .owned(levelBytes),
            upperStart: .owned(upperStartOut), upperLinks: .owned(upperOut), free: [], tombstones: [], freeUpperRuns: [],
            codes: nil, compact: compactPieces.map { .ranges($0) })
        try checkIntact()
        try SegmentWriter.write(path: path, indexKind: HNSWIndex.segmentKind, embeddingModel: embeddingModel,
                                sections: sections + extraSections, beforeCommit: checkIntact)
    }
}
