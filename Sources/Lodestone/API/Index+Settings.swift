extension Index {
    /// What an index is created with, stored in its manifest.
    struct Settings: Equatable {
        var kind: IndexKind
        var dimension: Int
        var metric: Metric
        var model: String
        var parameters: HNSWParameters

        /// The manifest's bytes: "LODEIDX1", the kind (UInt64: 0 HNSW, 1
        /// flat, 2 sparse), then ``VectorSettings``.
        func encoded() -> [UInt8] {
            var w = ByteWriter()
            w.raw(Array("LODEIDX1".utf8))
            w.u64(kind == .hnsw ? 0 : kind == .flat ? 1 : 2)
            VectorSettings(dimension: dimension, metric: metric, parameters: parameters, model: model).encode(into: &w)
            return w.bytes
        }

        static func decode(_ bytes: [UInt8], path: String) throws(LodestoneError) -> Settings {
            func corrupt(_ reason: String) -> LodestoneError { .corruptSegment(path: path, section: "manifest", reason: reason) }
            var r = ByteReader(bytes) { corrupt("index settings truncated") }
            guard try r.raw(8) == Array("LODEIDX1".utf8) else { throw corrupt("not the settings of a Lodestone Index") }
            let kindCode = try r.u64()
            guard kindCode <= 2 else { throw corrupt("unknown kind \(kindCode)") }
            let s = try VectorSettings.decode(from: &r, corrupt: corrupt)
            return Settings(kind: [IndexKind.hnsw, .flat, .sparse][Int(kindCode)], dimension: s.dimension, metric: s.metric, model: s.model,
                            parameters: s.parameters)
        }
    }
}
