// Sparse vectors and hybrid queries through the C ABI (lodestone.h).
import Lodestone

extension Check {
    /// `n` sparse vectors from CSR arrays: `offsets[0...n]` from 0, each
    /// record's components at its offset range of `indices` and `values`.
    static func sparseVectors(_ offsets: UnsafePointer<Int64>?, _ indices: UnsafePointer<UInt32>?,
                              _ values: UnsafePointer<Float>?, count n: Int) throws(LodestoneError) -> [SparseVector?] {
        let offsets = try pointer(offsets, "sparse_offsets")
        guard offsets[0] == 0 else { throw .invalidArgument(name: "sparse_offsets", reason: "must start at 0") }
        var out: [SparseVector?] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            let start = offsets[i], end = offsets[i + 1]
            guard start <= end, end - start <= Int64(SparseVector.maximumNonzeros) else {
                throw .invalidArgument(name: "sparse_offsets", reason: "record \(i) spans \(start)..<\(end)")
            }
            let count = Int(end - start)
            guard count > 0 else {
                out.append(nil)
                continue
            }
            let ix = try pointer(indices, "sparse_indices") + Int(start), vx = try pointer(values, "sparse_values") + Int(start)
            out.append(SparseVector(indices: Array(UnsafeBufferPointer(start: ix, count: count)),
                                    values: Array(UnsafeBufferPointer(start: vx, count: count))))
        }
        return out
    }

    /// A fusion code: 0 the sum of scores, 1 reciprocal rank with `rrfK`.
    static func fusion(_ code: Int32, _ rrfK: Int64) throws(LodestoneError) -> HybridFusion {
        switch code {
        case 0: return .sum
        case 1: return .reciprocalRank(k: try count(rrfK, "rrf_k", atMost: 1_000_000))
        default: throw .invalidArgument(name: "fusion", reason: "must be 0 (sum) or 1 (reciprocal rank), got \(code)")
        }
    }
}

@_cdecl("lds_index_upsert_sparse")
public func lds_index_upsert_sparse(_ handle: OpaquePointer?, _ ids: UnsafePointer<CChar>?, _ idOffsets: UnsafePointer<Int64>?,
                                    _ n: Int64, _ values: UnsafePointer<Float>?, _ sparseOffsets: UnsafePointer<Int64>?,
                                    _ sparseIndices: UnsafePointer<UInt32>?, _ sparseValues: UnsafePointer<Float>?,
                                    _ metadata: UnsafePointer<CChar>?, _ metadataOffsets: UnsafePointer<Int64>?,
                                    _ namespace: UnsafePointer<CChar>?, _ model: UnsafePointer<CChar>?, _ threads: Int32,
                                    _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        try upsertRecords(handle, ids, idOffsets, n, values, metadata, metadataOffsets, namespace, model, threads) {
            (n: Int) throws(LodestoneError) -> [SparseVector?] in
            try Check.sparseVectors(sparseOffsets, sparseIndices, sparseValues, count: n)
        }
    }
}

@_cdecl("lds_index_query_sparse")
public func lds_index_query_sparse(_ handle: OpaquePointer?, _ vector: UnsafePointer<Float>?,
                                   _ sparseIndices: UnsafePointer<UInt32>?, _ sparseValues: UnsafePointer<Float>?,
                                   _ nnz: Int64, _ topK: Int64, _ namespace: UnsafePointer<CChar>?,
                                   _ filter: UnsafePointer<CChar>?, _ fusion: Int32, _ rrfK: Int64, _ includeValues: Int32,
                                   _ includeMetadata: Int32, _ ef: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                   _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let a = try QueryArguments(topK, ef, namespace, filter, includeValues, includeMetadata)
        let n = try Check.count(nnz, "nnz", atMost: Int64(SparseVector.maximumNonzeros))
        let offsets: [Int64] = [0, Int64(n)]
        let query = try offsets.withUnsafeBufferPointer { (o) throws(LodestoneError) -> SparseVector in
            try Check.sparseVectors(o.baseAddress, sparseIndices, sparseValues, count: 1)[0]
                ?? SparseVector(indices: [], values: [])
        }
        let dense = vector == nil ? nil : try Check.floats(vector, count: index.dimension, "vector")
        let r = try index.query(vector: dense, sparseVector: query, topK: a.topK, namespace: a.namespace, filter: a.filter,
                                fusion: try Check.fusion(fusion, rrfK), includeValues: a.values, includeMetadata: a.metadata, ef: a.ef)
        a.hand([r.matches], dimension: index.dimension, to: out)
    }
}

@_cdecl("lds_index_query_text")
public func lds_index_query_text(_ handle: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ vector: UnsafePointer<Float>?,
                                 _ topK: Int64, _ namespace: UnsafePointer<CChar>?, _ filter: UnsafePointer<CChar>?,
                                 _ fusion: Int32, _ rrfK: Int64, _ includeValues: Int32, _ includeMetadata: Int32,
                                 _ ef: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let a = try QueryArguments(topK, ef, namespace, filter, includeValues, includeMetadata)
        let words = try Check.string(text, "text")
        let dense = vector == nil ? nil : try Check.floats(vector, count: index.dimension, "vector")
        let r = try index.query(text: words, vector: dense, topK: a.topK, namespace: a.namespace, filter: a.filter,
                                fusion: try Check.fusion(fusion, rrfK), includeValues: a.values,
                                includeMetadata: a.metadata, ef: a.ef)
        a.hand([r.matches], dimension: index.dimension, to: out)
    }
}
