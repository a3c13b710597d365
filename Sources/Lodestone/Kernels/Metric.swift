/// How two vectors are compared.
///
/// Scores follow Pinecone's conventions: for `cosine` and `dotProduct` a
/// higher score is more similar; for `euclidean` the score is the squared
/// Euclidean distance, and lower is more similar. Every index orders its
/// results best first whatever the metric.
public enum Metric: String, Sendable, CaseIterable, Codable {
    /// Cosine similarity, a.b / (|a| |b|). Vectors are normalised once, when
    /// they are stored, so searching costs one inner product per vector.
    case cosine
    /// Squared Euclidean (L2) distance.
    case euclidean
    /// Inner (dot) product, with no normalisation.
    case dotProduct = "dotproduct"

    /// Whether a higher score means "more similar".
    public var higherIsBetter: Bool { self != .euclidean }

    /// The rank value an index sorts ascending by, from a score.
    @inlinable func rankValue(score: Float) -> Float {
        self == .euclidean ? score : -score
    }

    /// The score reported to users, from a rank value.
    @inlinable func score(rankValue: Float) -> Float {
        self == .euclidean ? rankValue : -rankValue
    }

    /// The distance (dissimilarity; 0 for identical directions or points)
    /// that corresponds to a score: 1 - similarity for cosine, the negated
    /// inner product for dot product, the squared L2 distance for euclidean.
    public func distance(score: Float) -> Float {
        switch self {
        case .cosine: return 1 - score
        case .dotProduct: return -score
        case .euclidean: return score
        }
    }

    /// The metric's number in persisted files (FORMAT.md): 0 cosine,
    /// 1 euclidean, 2 dot product.
    var storageCode: UInt64 {
        switch self {
        case .cosine: return 0
        case .euclidean: return 1
        case .dotProduct: return 2
        }
    }

    /// The metric stored as `code`, or nil for an unknown number.
    init?(storageCode code: UInt64) {
        switch code {
        case 0: self = .cosine
        case 1: self = .euclidean
        case 2: self = .dotProduct
        default: return nil
        }
    }

    /// Parses a metric name as users type it (`cosine`, `euclidean`, `l2`,
    /// `dotproduct`, `dot`, `ip`), case-insensitively.
    public init?(name: String) {
        switch name.lowercased() {
        case "cosine", "cos", "angular": self = .cosine
        case "euclidean", "l2", "l2sq": self = .euclidean
        case "dotproduct", "dot", "ip", "innerproduct", "inner_product": self = .dotProduct
        default: return nil
        }
    }
}

/// One search result.
public struct Neighbor: Sendable, Hashable {
    /// The key the vector was stored under.
    public var key: UInt64
    /// The similarity score on the metric's scale (see ``Metric``).
    public var score: Float

    /// Creates a result.
    public init(key: UInt64, score: Float) {
        self.key = key
        self.score = score
    }
}
