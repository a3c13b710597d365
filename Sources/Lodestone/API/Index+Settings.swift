extension Index {
    /// What an index is created with, stored in its manifest.
    struct Settings: Equatable {
        var kind: IndexKind
        var dimension: Int
        var metric: Metric
        var model: String
        var parameters: HNSWParameters
        /// The metadata field whose text the index keeps BM25 vectors of
        /// (``IndexOptions/textField``), or nil.
        var textField: String? = nil

        /// The manifest's bytes: "LODEIDX1" (or "LODEIDX2" with a text
        /// field), the kind (UInt64: 0 HNSW, 1 flat, 2 sparse), then
        /// ``VectorSettings``, then in version 2 the text field's UTF-8
        /// (UInt32 length, bytes).
        func encoded() -> [UInt8] {
            var w = ByteWriter()
            w.raw(Array((textField == nil ? "LODEIDX1" : "LODEIDX2").utf8))
            w.u64(kind == .hnsw ? 0 : kind == .flat ? 1 : 2)
            VectorSettings(dimension: dimension, metric: metric, parameters: parameters, model: model).encode(into: &w)
            if let textField {
                let bytes = Array(textField.utf8)
                w.u32(UInt32(bytes.count))
                w.raw(bytes)
            }
            return w.bytes
        }

        static func decode(_ bytes: [UInt8], path: String) throws(LodestoneError) -> Settings {
            func corrupt(_ reason: String) -> LodestoneError { .corruptSegment(path: path, section: "manifest", reason: reason) }
            var r = ByteReader(bytes) { corrupt("index settings truncated") }
            let magic = try r.raw(8)
            guard magic == Array("LODEIDX1".utf8) || magic == Array("LODEIDX2".utf8) else {
                throw corrupt("not the settings of a Lodestone Index")
            }
            let kindCode = try r.u64()
            guard kindCode <= 2 else { throw corrupt("unknown kind \(kindCode)") }
            let s = try VectorSettings.decode(from: &r, corrupt: corrupt)
            var textField: String? = nil
            if magic == Array("LODEIDX2".utf8) {
                let n = Int(try r.u32())
                guard n >= 1, n <= Index.maximumTextFieldBytes else { throw corrupt("text field name of \(n) bytes") }
                guard let field = String(validating: try r.raw(n), as: UTF8.self) else {
                    throw corrupt("text field name not UTF-8")
                }
                textField = field
            }
            return Settings(kind: [IndexKind.hnsw, .flat, .sparse][Int(kindCode)], dimension: s.dimension, metric: s.metric,
                            model: s.model, parameters: s.parameters, textField: textField)
        }
    }

    /// The longest text field name, in UTF-8 bytes (a metadata key's limit).
    static let maximumTextFieldBytes = 512
}
