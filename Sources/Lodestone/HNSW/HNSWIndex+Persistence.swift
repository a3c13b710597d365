import CLodestoneKernels
import Synchronization

extension HNSWIndex {
    static let segmentKind: UInt32 = 2

    /// Writes the index to a segment file at `path` (atomically: a reader
    /// of `path` sees the old file or the new one, never a mix). Searches
    /// may run meanwhile; writers wait.
    ///
    /// The format is described in `Sources/Lodestone/Storage/FORMAT.md`.
    public func persist(to path: String) throws(LodestoneError) {
        try writer.withLock { (w: inout WriterState) throws(LodestoneError) in
            let n = nodeCount.load(ordering: .acquiring)
            var parameterWriter = ByteWriter()
            let metricCode: UInt64 = metric == .cosine ? 0 : metric == .euclidean ? 1 : 2
            for v in [UInt64(dimension), metricCode, UInt64(m), UInt64(parameters.efConstruction),
                      UInt64(parameters.efSearch), parameters.seed, UInt64(n), UInt64(liveCount.load(ordering: .acquiring)),
                      entry.load(ordering: .acquiring), UInt64(w.upperBlocks), w.insertions] {
                parameterWriter.u64(v)
            }
            let parameterBytes = parameterWriter.bytes
            var freeWriter = ByteWriter(), tombstoneWriter = ByteWriter()
            for f in w.free { freeWriter.u32(f.node) }
            for t in w.tombstones { tombstoneWriter.u32(t) }
            let freeCount = w.free.count, tombstoneCount = w.tombstones.count
            try withBytes(parameterBytes) { (params: UnsafeRawBufferPointer) throws(LodestoneError) in
                try withBytes(freeWriter.bytes) { (free: UnsafeRawBufferPointer) throws(LodestoneError) in
                    try withBytes(tombstoneWriter.bytes) { (tombs: UnsafeRawBufferPointer) throws(LodestoneError) in
                        let sections: [PendingSection] = [
                            PendingSection(kind: SectionKind.parameters, pieces: [params]),
                            PendingSection(kind: SectionKind.vectors, stride: vectors.stride, count: n,
                                           pieces: vectors.byteRanges(records: n)),
                            PendingSection(kind: SectionKind.keys, stride: 8, count: n, pieces: keyRecords.byteRanges(records: n)),
                            PendingSection(kind: SectionKind.states, stride: 1, count: n, pieces: states.byteRanges(records: n)),
                            PendingSection(kind: SectionKind.hnswLinks0, stride: links0.stride, count: n,
                                           pieces: links0.byteRanges(records: n)),
                            PendingSection(kind: SectionKind.hnswLevels, stride: 1, count: n,
                                           pieces: levelRecords.byteRanges(records: n)),
                            PendingSection(kind: SectionKind.hnswUpperStart, stride: 4, count: n,
                                           pieces: upperStart.byteRanges(records: n)),
                            PendingSection(kind: SectionKind.hnswUpperLinks, stride: upperLinks.stride, count: w.upperBlocks,
                                           pieces: upperLinks.byteRanges(records: w.upperBlocks)),
                            PendingSection(kind: SectionKind.free, codec: .lz4, stride: 4, count: freeCount, pieces: [free]),
                            PendingSection(kind: SectionKind.hnswTombstones, codec: .lz4, stride: 4, count: tombstoneCount,
                                           pieces: [tombs]),
                        ]
                        try SegmentWriter.write(path: path, indexKind: HNSWIndex.segmentKind, embeddingModel: embeddingModel,
                                                sections: sections)
                    }
                }
            }
        }
    }

    /// Opens an index persisted with ``persist(to:)``: the file is mapped,
    /// validated (header, directory, every checksum, every link), and its
    /// vectors and links are used in place; nothing is recomputed. The index
    /// stays writable: changes live in memory (copy-on-write pages) until the
    /// next ``persist(to:)``.
    /// - Throws: ``LodestoneError/corruptSegment(path:section:reason:)`` naming
    ///   the part at fault, ``LodestoneError/unsupportedFormatVersion(path:found:supported:)``,
    ///   or ``LodestoneError/io(path:operation:errno:)``.
    public static func open(path: String, kernels: DistanceKernels = .active) throws(LodestoneError) -> HNSWIndex {
        let segment = try MappedSegment(path: path)
        func corrupt(_ section: String, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: section, reason: reason)
        }
        guard segment.indexKind == segmentKind else {
            throw corrupt("header", "index kind \(segment.indexKind) is not an HNSW index (2)")
        }
        var reader = ByteReader(try segment.bytes(SectionKind.parameters)) { corrupt("parameters", "too short") }
        let dimension = Int(try reader.u64()), metricCode = try reader.u64()
        let m = Int(try reader.u64()), efc = Int(try reader.u64()), efs = Int(try reader.u64())
        let seed = try reader.u64()
        let n = Int(try reader.u64()), live = Int(try reader.u64())
        let entryWord = try reader.u64(), upperBlocks = Int(try reader.u64()), insertions = try reader.u64()
        guard metricCode <= 2 else { throw corrupt("parameters", "unknown metric \(metricCode)") }
        let metric: Metric = metricCode == 0 ? .cosine : metricCode == 1 ? .euclidean : .dotProduct
        guard dimension > 0 && dimension <= 1 << 16, n >= 0, n < Int(UInt32.max), live <= n, upperBlocks >= 0 else {
            throw corrupt("parameters", "inconsistent counts (dimension \(dimension), nodes \(n), live \(live))")
        }
        let index: HNSWIndex
        do {
            index = try HNSWIndex(dimension: dimension, metric: metric,
                                  parameters: HNSWParameters(m: m, efConstruction: efc, efSearch: efs, seed: seed),
                                  embeddingModel: segment.embeddingModel, kernels: kernels)
        } catch {
            throw corrupt("parameters", "\(error)")
        }
        index.segment = segment
        index.vectors.adopt(try segment.records(SectionKind.vectors, stride: index.vectors.stride, count: n), records: n)
        index.keyRecords.adopt(try segment.records(SectionKind.keys, stride: 8, count: n), records: n)
        index.states.adopt(try segment.records(SectionKind.states, stride: 1, count: n), records: n)
        index.links0.adopt(try segment.records(SectionKind.hnswLinks0, stride: index.links0.stride, count: n), records: n)
        index.levelRecords.adopt(try segment.records(SectionKind.hnswLevels, stride: 1, count: n), records: n)
        index.upperStart.adopt(try segment.records(SectionKind.hnswUpperStart, stride: 4, count: n), records: n)
        index.upperLinks.adopt(try segment.records(SectionKind.hnswUpperLinks, stride: index.upperLinks.stride,
                                                   count: upperBlocks), records: upperBlocks)
        let freeIDs = try idList(segment, SectionKind.free, nodes: n)
        let tombstones = try idList(segment, SectionKind.hnswTombstones, nodes: n)
        try index.validateGraph(nodes: n, upperBlocks: upperBlocks, entry: entryWord, path: path)

        // Rebuild what lives only in memory: the key table and counters.
        try index.writer.withLock { (w: inout WriterState) throws(LodestoneError) in
            w.upperBlocks = upperBlocks
            w.insertions = insertions
            w.tombstones = tombstones
            w.free = freeIDs.map { (node: $0, epoch: 0) }
            var liveSeen = 0
            for id in 0..<UInt32(n) where index.state(id) == .live {
                let key = index.key(id)
                guard w.keys.node(forKey: key, keyOf: index.key) == nil else {
                    throw corrupt("keys", "key \(key) is stored twice")
                }
                w.keys.insert(key: key, node: id, keyOf: index.key)
                liveSeen += 1
            }
            guard liveSeen == live else { throw corrupt("states", "\(liveSeen) live nodes, parameters say \(live)") }
        }
        index.entry.store(entryWord, ordering: .releasing)
        index.nodeCount.store(n, ordering: .releasing)
        index.liveCount.store(live, ordering: .releasing)
        index.deadCount.store(freeIDs.count + tombstones.count, ordering: .releasing)
        return index
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

    /// Checks every structural invariant a search relies on, so that a file
    /// whose checksums match but whose content is wrong (a writer bug, a
    /// crafted file) is refused instead of read out of bounds.
    private func validateGraph(nodes n: Int, upperBlocks: Int, entry entryWord: UInt64, path: String) throws(LodestoneError) {
        func corrupt(_ section: String, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: section, reason: reason)
        }
        for id in 0..<UInt32(n) {
            guard let s = State(rawValue: lodestone_load_u8(states.record(id).assumingMemoryBound(to: UInt8.self))) else {
                throw corrupt("states", "node \(id) has an unknown state")
            }
            if s == .unused { continue }
            let lvl = level(id)
            guard lvl <= 30 else { throw corrupt("hnsw.levels", "node \(id) has level \(lvl)") }
            if lvl > 0 {
                let first = Int(upperStart.record(id).load(as: UInt32.self))
                guard first + lvl <= upperBlocks else {
                    throw corrupt("hnsw.upper-start", "node \(id)'s blocks \(first)..<\(first + lvl) exceed \(upperBlocks)")
                }
            }
            for layer in 0...lvl {
                let slots = links(id, layer: layer)
                for j in 0..<linkCapacity(layer: layer) {
                    let nb = slots[j]
                    guard nb == HNSWIndex.noNode || Int(nb) < n else {
                        throw corrupt(layer == 0 ? "hnsw.links0" : "hnsw.upper-links", "node \(id) links to \(nb) ≥ \(n)")
                    }
                    if nb != HNSWIndex.noNode && layer > 0 && level(nb) < layer {
                        throw corrupt("hnsw.upper-links", "node \(id) links on layer \(layer) to node \(nb) of level \(level(nb))")
                    }
                }
            }
        }
        if entryWord != 0 {
            let e = Int(UInt32(truncatingIfNeeded: entryWord)), top = Int(entryWord >> 32) - 1
            guard e < n, top == level(UInt32(e)) else { throw corrupt("parameters", "entry point \(e) at level \(top) is invalid") }
        } else if liveCount.load(ordering: .relaxed) > 0 {
            throw corrupt("parameters", "no entry point but live nodes")
        }
    }
}
