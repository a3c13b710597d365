/// What a manifest records about a vector index so it can be recreated
/// before its first segment exists and checked against the segment after:
/// dimension, metric, HNSW parameters and embedding model.
///
/// Encoding (little-endian): dimension, metric code, m, efConstruction,
/// efSearch, seed (UInt64 each), then the model's UTF-8 length (UInt32) and
/// bytes, then the traversal (UInt64: 0 exact, 1 quantized; absent in
/// settings written before it existed, which mean exact). ``DurableIndex`` stores exactly this; an ``Index`` prefixes it with
/// its own magic and kind.
struct VectorSettings: Equatable {
    var dimension: Int
    var metric: Metric
    var parameters: HNSWParameters
    var model: String

    func encode(into w: inout ByteWriter) {
        for v in [UInt64(dimension), metric.storageCode, UInt64(parameters.m), UInt64(parameters.efConstruction),
                  UInt64(parameters.efSearch), parameters.seed] { w.u64(v) }
        w.lengthPrefixed(model)
        w.u64(parameters.traversal.storageCode)
    }

    /// Reads settings from `r`; `corrupt(reason)` makes the error (naming
    /// the manifest) for absurd values.
    static func decode(from r: inout ByteReader, corrupt: (String) -> LodestoneError) throws(LodestoneError) -> VectorSettings {
        func int() throws(LodestoneError) -> Int {
            guard let v = Int(exactly: try r.u64()), v <= 1 << 20 else { throw corrupt("absurd setting") }
            return v
        }
        let d = try int(), metricCode = try r.u64(), m = try int(), efc = try int(), efs = try int()
        let seed = try r.u64()
        let model = try r.lengthPrefixedString()
        let traversalCode = r.remaining >= 8 ? try r.u64() : 0
        guard let traversal = HNSWParameters.Traversal(storageCode: traversalCode) else {
            throw corrupt("unknown traversal \(traversalCode)")
        }
        guard let metric = Metric(storageCode: metricCode), d >= 1 else {
            throw corrupt("unknown metric \(metricCode), or dimension \(d)")
        }
        return VectorSettings(dimension: d, metric: metric,
                              parameters: HNSWParameters(m: m, efConstruction: efc, efSearch: efs, seed: seed,
                                                         traversal: traversal), model: model)
    }
}
