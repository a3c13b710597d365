/// A summary of the vectors an index was built from, kept so that vectors
/// from another embedding model can be noticed even when the dimension (and
/// the name the caller passes) match: the mean direction of the first
/// ``sampleLimit`` vectors stored and the mean and spread of their norms.
///
/// Embedding models differ mostly in where their vectors sit on the sphere:
/// the mean of one model's vectors points somewhere its peers' does not, so
/// the cosine between the stored mean and a batch's mean tells models apart
/// where a dimension check cannot.
public struct VectorFingerprint: Sendable, Hashable {
    /// Vectors summarised.
    public private(set) var count = 0
    /// Sum of the (unit-normalised) vectors, per component.
    private(set) var directionSum: [Double]
    /// Sum and sum of squares of the raw vectors' norms.
    private(set) var normSum = 0.0
    private(set) var normSquareSum = 0.0

    /// Vectors summarised at most (the first ones stored).
    public static let sampleLimit = 10_000

    /// An empty fingerprint for `dimension`-dimensional vectors.
    public init(dimension: Int) { directionSum = [Double](repeating: 0, count: dimension) }

    /// The mean of the unit-normalised vectors.
    public var meanDirection: [Double] { directionSum.map { count > 0 ? $0 / Double(count) : 0 } }
    /// The mean norm of the raw vectors.
    public var meanNorm: Double { count > 0 ? normSum / Double(count) : 0 }
    /// The standard deviation of the raw vectors' norms.
    public var normDeviation: Double {
        guard count > 1 else { return 0 }
        let mean = meanNorm
        return max(0, normSquareSum / Double(count) - mean * mean).squareRoot()
    }

    /// Adds vectors (row-major) while the sample is not full.
    mutating func add(_ rows: [Float], dimension d: Int) {
        var i = 0
        while i * d < rows.count && count < Self.sampleLimit {
            var norm2 = 0.0
            for j in 0..<d { norm2 += Double(rows[i * d + j]) * Double(rows[i * d + j]) }
            let norm = norm2.squareRoot()
            if norm > 0 { for j in 0..<d { directionSum[j] += Double(rows[i * d + j]) / norm } }
            normSum += norm
            normSquareSum += norm2
            count += 1
            i += 1
        }
    }

    /// How `rows` (row-major) compare with the stored vectors.
    public func compare(_ rows: [Float], dimension d: Int) -> FingerprintComparison {
        var other = VectorFingerprint(dimension: d)
        var sample = rows
        if sample.count > Self.sampleLimit * d { sample = Array(sample.prefix(Self.sampleLimit * d)) }
        other.add(sample, dimension: d)
        let a = meanDirection, b = other.meanDirection
        var dot = 0.0, na = 0.0, nb = 0.0
        for j in 0..<min(a.count, b.count) {
            dot += a[j] * b[j]
            na += a[j] * a[j]
            nb += b[j] * b[j]
        }
        let cosine = na > 0 && nb > 0 ? dot / (na.squareRoot() * nb.squareRoot()) : 1
        let spread = max(normDeviation, meanNorm * 0.01, 1e-6)
        let normShift = abs(other.meanNorm - meanNorm) / spread
        return FingerprintComparison(storedCount: count, incomingCount: other.count, meanDirectionCosine: cosine,
                                     storedMeanLength: na.squareRoot(), incomingMeanLength: nb.squareRoot(),
                                     normShiftInDeviations: normShift)
    }

    // MARK: Persistence

    func encode(into w: inout ByteWriter) {
        w.u64(UInt64(count))
        w.u64(normSum.bitPattern)
        w.u64(normSquareSum.bitPattern)
        w.u32(UInt32(directionSum.count))
        for v in directionSum { w.u64(v.bitPattern) }
    }

    static func decode(_ r: inout ByteReader, dimension: Int) throws(LodestoneError) -> VectorFingerprint {
        var f = VectorFingerprint(dimension: dimension)
        f.count = Int(try r.u64())
        f.normSum = Double(bitPattern: try r.u64())
        f.normSquareSum = Double(bitPattern: try r.u64())
        let n = Int(try r.u32())
        guard n == dimension else {
            throw .invalidArgument(name: "fingerprint", reason: "\(n) components for dimension \(dimension)")
        }
        for j in 0..<n { f.directionSum[j] = Double(bitPattern: try r.u64()) }
        return f
    }
}

/// Incoming vectors set against an index's ``VectorFingerprint``.
public struct FingerprintComparison: Sendable, Hashable {
    public var storedCount: Int
    public var incomingCount: Int
    /// Cosine between the stored and the incoming mean directions.
    public var meanDirectionCosine: Double
    /// Lengths of the two mean directions (near 0 when vectors point every
    /// way, as random ones do; then the cosine says little).
    public var storedMeanLength: Double
    public var incomingMeanLength: Double
    /// How far the incoming mean norm is from the stored one, in stored
    /// standard deviations.
    public var normShiftInDeviations: Double

    /// Whether the incoming vectors clearly come from another distribution
    /// (another model, or unnormalised where the index's were normalised):
    /// mean directions far apart while both are pronounced, or norms many
    /// deviations away. Needs a few stored and incoming vectors.
    public var looksLikeAnotherModel: Bool {
        guard storedCount >= 50 && incomingCount >= 10 else { return false }
        let directional = storedMeanLength > 0.1 && incomingMeanLength > 0.1 && meanDirectionCosine < 0.5
        return directional || normShiftInDeviations > 6
    }

    /// A sentence for logs and `lodestone verify --vectors`.
    public var summary: String {
        let verdict = looksLikeAnotherModel ? "WARNING: these vectors look like another embedding model's" :
            "consistent with the stored vectors"
        func f(_ x: Double) -> String { String(Double(Int((x * 1000).rounded())) / 1000) }
        return "\(verdict) (mean-direction cosine \(f(meanDirectionCosine)), mean lengths \(f(storedMeanLength)) "
            + "vs \(f(incomingMeanLength)), norm shift \(f(normShiftInDeviations)) deviations; "
            + "\(storedCount) stored and \(incomingCount) incoming vectors compared)"
    }
}
