extension FlatIndex {
    static let segmentKind: UInt32 = 1

    /// Writes the index to a segment file at `path`, atomically (see
    /// `Storage/FORMAT.md`): its rows, keys and squared norms.
    public func persist(to path: String, embeddingModel: String = "") throws(LodestoneError) {
        try persist(to: path, embeddingModel: embeddingModel, extraSections: [])
    }

    /// ``persist(to:embeddingModel:)`` with sections of the owner's (an
    /// ``Index``'s records) written into the same segment.
    func persist(to path: String, embeddingModel: String, extraSections: [PendingSection]) throws(LodestoneError) {
        var parameters = ByteWriter()
        for v in [UInt64(dimension), metric.storageCode, UInt64(count)] { parameters.u64(v) }
        let n = count, rowBytes = store.stride * MemoryLayout<Float>.size
        try SegmentWriter.write(path: path, indexKind: FlatIndex.segmentKind, embeddingModel: embeddingModel, sections: [
            PendingSection(kind: SectionKind.parameters, owned: parameters.bytes),
            PendingSection(kind: SectionKind.vectors, stride: rowBytes, count: n,
                           pieces: [UnsafeRawBufferPointer(start: store.base, count: n * rowBytes)]),
            PendingSection(kind: SectionKind.keys, stride: 8, count: n, owned: store.keys),
            PendingSection(kind: SectionKind.norms, stride: 4, count: n, owned: store.squaredNorms),
        ] + extraSections)
    }

    /// Opens a flat index persisted with ``persist(to:embeddingModel:)``: the
    /// file is mapped copy-on-write and every checksum verified (a flat
    /// search reads every row anyway); rows are scanned in place, and the
    /// index stays writable.
    public static func open(path: String, kernels: DistanceKernels = .active) throws(LodestoneError) -> FlatIndex {
        try open(segment: try MappedSegment(path: path, lazy: false), kernels: kernels)
    }

    /// Opens a flat index from a segment already mapped (and verified).
    static func open(segment: MappedSegment, kernels: DistanceKernels = .active) throws(LodestoneError) -> FlatIndex {
        let path = segment.path
        func corrupt(_ section: String, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: section, reason: reason)
        }
        guard segment.indexKind == segmentKind else { throw corrupt("header", "index kind \(segment.indexKind) is not a flat index (1)") }
        var r = ByteReader(try segment.bytes(SectionKind.parameters)) { corrupt("parameters", "too short") }
        func int() throws(LodestoneError) -> Int {
            guard let v = Int(exactly: try r.u64()), v < 1 << 40 else { throw corrupt("parameters", "absurd value") }
            return v
        }
        let dimension = try int(), metricCode = try r.u64(), n = try int()
        guard dimension > 0 && dimension <= 1 << 16, let metric = Metric(storageCode: metricCode), n >= 0 && n < 1 << 40 else {
            throw corrupt("parameters", "dimension \(dimension), metric \(metricCode), \(n) rows")
        }
        var index = try FlatIndex(dimension: dimension, metric: metric, kernels: kernels)
        let rowBytes = index.store.stride * MemoryLayout<Float>.size
        let rows = try segment.records(SectionKind.vectors, stride: rowBytes, count: n)
        let keyBytes = try segment.bytes(SectionKind.keys), normBytes = try segment.bytes(SectionKind.norms)
        guard keyBytes.count == n * 8, normBytes.count == n * 4 else { throw corrupt("keys", "lengths do not match \(n) rows") }
        let keys = keyBytes.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }.map { UInt64(littleEndian: $0) }
        let norms = normBytes.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }.map { Float(bitPattern: UInt32(littleEndian: $0)) }
        var slots: [UInt64: Int] = [:]
        slots.reserveCapacity(n)
        for (i, key) in keys.enumerated() {
            guard slots.updateValue(i, forKey: key) == nil else { throw corrupt("keys", "key \(key) is stored twice") }
        }
        index.store = VectorStore(dimension: dimension, adopting: rows.assumingMemoryBound(to: Float.self), count: n,
                                  keys: keys, squaredNorms: norms, mapping: segment)
        index.slots = slots
        return index
    }
}
