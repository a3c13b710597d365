/// A sparse vector: the nonzero components of a vector over a large
/// vocabulary (BM25 or SPLADE term weights), as Pinecone's `sparse_values`.
///
/// Records carry one beside their dense values (``Record/sparseValues``);
/// queries score it by dot product (``Index/query(vector:sparseVector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)``).
/// Indices are unique; any order is accepted and stored ascending.
public struct SparseVector: Sendable, Hashable {
    /// The components' positions (term ids), unique.
    public var indices: [UInt32]
    /// The components' values, one per index, finite.
    public var values: [Float]

    /// A sparse vector of these components (checked when stored or queried:
    /// see ``validated(field:)``).
    public init(indices: [UInt32], values: [Float]) {
        self.indices = indices
        self.values = values
    }

    /// The most nonzero components a sparse vector may have (Pinecone's
    /// limit for a sparse index's records).
    public static let maximumNonzeros = 2_048

    /// Whether it has no component.
    public var isEmpty: Bool { indices.isEmpty }

    /// The dot product with `other`.
    public func dot(_ other: SparseVector) -> Float {
        var i = 0, j = 0
        var sum: Float = 0
        while i < indices.count && j < other.indices.count {
            if indices[i] == other.indices[j] {
                sum += values[i] * other.values[j]
                i += 1
                j += 1
            } else if indices[i] < other.indices[j] {
                i += 1
            } else {
                j += 1
            }
        }
        return sum
    }

    /// This vector checked and with its indices ascending: equal lengths,
    /// unique indices, finite values, at most ``maximumNonzeros``
    /// components.
    /// - Parameter field: how errors name it (`sparseValues`,
    ///   `sparseVector`, or a record's).
    /// - Throws: ``LodestoneError/invalidArgument(name:reason:)`` naming
    ///   `field` and what is wrong.
    public func validated(field: String = "sparseValues") throws(LodestoneError) -> SparseVector {
        guard indices.count == values.count else {
            throw .invalidArgument(name: field, reason: "\(indices.count) indices but \(values.count) values; "
                                   + "they must have the same length")
        }
        guard indices.count <= Self.maximumNonzeros else {
            throw .invalidArgument(name: field, reason: "\(indices.count) components; at most \(Self.maximumNonzeros)")
        }
        for (i, v) in values.enumerated() where !v.isFinite {
            throw .invalidArgument(name: field, reason: "value \(i) (index \(indices[i])) is \(v); values must be finite")
        }
        var ascending = true
        for i in indices.indices.dropFirst() where indices[i - 1] >= indices[i] {
            ascending = false
            break
        }
        if ascending { return self }
        let order = indices.indices.sorted { indices[$0] < indices[$1] }
        let sorted = SparseVector(indices: order.map { indices[$0] }, values: order.map { values[$0] })
        for i in sorted.indices.indices.dropFirst() where sorted.indices[i - 1] == sorted.indices[i] {
            throw .invalidArgument(name: field, reason: "index \(sorted.indices[i]) appears twice; indices must be unique")
        }
        return sorted
    }
}

/// How a query with both a dense and a sparse vector ranks records.
public enum HybridFusion: Sendable, Hashable {
    /// The dense score plus the sparse dot product, as Pinecone scores a
    /// sparse-dense query (weight the two by scaling the vectors). Needs a
    /// similarity metric (cosine or dot product), where higher is better.
    case sum
    /// Reciprocal-rank fusion: each record scores the sum over the two
    /// rankings that hold it of 1 / (`k` + its rank, from 1); needs no
    /// common scale.
    case reciprocalRank(k: Int = 60)
}

/// The one binary codec of a sparse vector, for the write-ahead log and
/// delta files (FORMAT.md): UInt32 component count, then per component its
/// UInt32 index and Float32 value, indices ascending.
enum SparseCodec {
    static func encode(_ vector: SparseVector?, into w: inout ByteWriter) {
        guard let vector else {
            w.u32(0)
            return
        }
        w.u32(UInt32(vector.indices.count))
        for (i, v) in zip(vector.indices, vector.values) {
            w.u32(i)
            w.u32(v.bitPattern)
        }
    }

    /// Reads a vector written by ``encode(_:into:)`` (nil when it has no
    /// component), checking what ``SparseVector/validated(field:)`` checks.
    static func decode(_ r: inout ByteReader, corrupt: (String) -> LodestoneError) throws(LodestoneError) -> SparseVector? {
        let n = Int(try r.u32())
        guard n <= SparseVector.maximumNonzeros else { throw corrupt("\(n) components") }
        guard n > 0 else { return nil }
        var indices: [UInt32] = [], values: [Float] = []
        indices.reserveCapacity(n)
        values.reserveCapacity(n)
        for _ in 0..<n {
            let index = try r.u32(), value = Float(bitPattern: try r.u32())
            guard value.isFinite, indices.last.map({ $0 < index }) ?? true else {
                throw corrupt("component \(indices.count) (index \(index), value \(value)) is out of order or not finite")
            }
            indices.append(index)
            values.append(value)
        }
        return SparseVector(indices: indices, values: values)
    }
}
