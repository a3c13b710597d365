/// Validation and normalisation shared by every index: a vector enters an
/// index (or a search) only through here, so every path agrees bit for bit on
/// what is stored and what is compared.
enum VectorPreparation {
    /// How far a squared norm may be from 1 for a vector to count as unit
    /// length under cosine.
    static let unitTolerance: Float = 1e-5

    /// Checks `vector` against the index's dimension and requires finite
    /// components; for cosine, rescales it to unit length. Writes the prepared
    /// vector to `out` and returns its squared norm (after normalisation).
    static func prepare(
        _ vector: UnsafeBufferPointer<Float>, dimension: Int, metric: Metric,
        kernels: DistanceKernels, into out: UnsafeMutablePointer<Float>
    ) throws(LodestoneError) -> Float {
        guard vector.count == dimension else {
            throw .dimensionMismatch(expected: dimension, actual: vector.count)
        }
        for i in 0..<dimension where !vector[i].isFinite {
            throw .nonFiniteComponent(index: i, value: vector[i])
        }
        let base = vector.baseAddress!
        let squaredNorm = kernels.dot(base, base, dimension)
        guard squaredNorm.isFinite else {
            // Finite components whose squares overflow Float.
            throw .invalidArgument(name: "vector", reason: "its squared norm overflows Float32 (components too large)")
        }
        if metric == .cosine {
            guard squaredNorm > 0 else { throw .zeroVector }
            // Already unit length to float precision (as most embedding
            // models emit): stored as given, so the values read back and
            // exported are the caller's, bit for bit, and re-importing an
            // export stores the same bits. The cosine this gives differs from
            // a renormalised vector's by under 1e-5 relative.
            if abs(squaredNorm - 1) <= VectorPreparation.unitTolerance {
                out.update(from: base, count: dimension)
                return squaredNorm
            }
            // Normalise in Double so the scale factor itself adds no error.
            let scale = Float(1 / Double(squaredNorm).squareRoot())
            for i in 0..<dimension { out[i] = base[i] * scale }
            return kernels.dot(out, out, dimension)
        }
        out.update(from: base, count: dimension)
        return squaredNorm
    }

    /// Prepares one vector into a new array.
    static func prepared(
        _ vector: [Float], dimension: Int, metric: Metric, kernels: DistanceKernels
    ) throws(LodestoneError) -> (vector: [Float], squaredNorm: Float) {
        var out = [Float](repeating: 0, count: dimension)
        var norm: Float = 0
        let result: Result<Float, LodestoneError> = vector.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { o in
                Result { () throws(LodestoneError) -> Float in
                    try prepare(v, dimension: dimension, metric: metric, kernels: kernels, into: o.baseAddress!)
                }
            }
        }
        norm = try result.get()
        return (out, norm)
    }

    /// Validates `count` rows of `dimension` floats and prepares them for
    /// `metric` (normalised under cosine); returns the rows and their
    /// squared norms. Shared by every index.
    static func prepareRows(_ vectors: [Float], count n: Int, dimension d: Int, metric: Metric,
                            kernels: DistanceKernels) throws(LodestoneError) -> (rows: [Float], norms: [Float]) {
        var rows = [Float](repeating: 0, count: n * d)
        var norms = [Float](repeating: 0, count: n)
        let failure: LodestoneError? = vectors.withUnsafeBufferPointer { src in
            rows.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let v = UnsafeBufferPointer(rebasing: src[(i * d)..<((i + 1) * d)])
                    do throws(LodestoneError) {
                        norms[i] = try VectorPreparation.prepare(v, dimension: d, metric: metric, kernels: kernels,
                                                                into: dst.baseAddress! + i * d)
                    } catch {
                        return error
                    }
                }
                return nil
            }
        }
        if let failure { throw failure }
        return (rows, norms)
    }
}
