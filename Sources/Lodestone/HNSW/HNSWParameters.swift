/// How an ``HNSWIndex`` builds its graph.
public struct HNSWParameters: Sendable, Hashable, Codable {
    /// Links per node on the upper layers; layer 0 keeps `2 * m`. More links
    /// raise recall at a given `ef` and cost memory and build time.
    public var m: Int
    /// Beam width while inserting: higher builds a better graph, slower.
    public var efConstruction: Int
    /// The default beam width of a search (raised to `k` when smaller).
    public var efSearch: Int
    /// Seeds the level draws: a single-threaded build with the same seed and
    /// input is identical.
    public var seed: UInt64
    /// How a search walks layer 0 (default ``Traversal/exact``).
    public var traversal: Traversal

    /// How a search walks the graph's bottom layer.
    public enum Traversal: String, Sendable, Hashable, Codable, CaseIterable {
        /// A float32 distance for every neighbour of every node expanded
        /// (hnswlib's search).
        case exact
        /// Each node keeps its neighbours' 1-bit codes and its own 8-bit
        /// code beside its links; the walk estimates all neighbours of a
        /// node in one pass over them, ranks the nodes it expands by their
        /// 8-bit codes, and computes float32 distances only to re-rank the
        /// best few at the end, so results carry exact scores (SymphonyQG's
        /// scheme). Inserts fill each new node's layer-0 list up to `2 * m`
        /// past the heuristic's choice (the block estimates every slot at
        /// the same cost; cosine and euclidean); a later reverse link into a
        /// full list re-chooses it with the heuristic and fills it again, so
        /// an index grown by small batches keeps most of the fill. Costs
        /// about `2 * m * (dimension / 8 + 12) + dimension` more bytes per
        /// vector (2,368 at `m` 16, 384-d), and answers more queries per
        /// second than the exact traversal at the same recall
        /// (measurements: docs/design/quantized-walk.md).
        case quantized
        /// Each node keeps one 4-bit code of its own vector (about
        /// `dimension / 2 + 16` bytes: 208 at 384-d); the walk ranks every
        /// neighbour of a node it expands by gathering its code, and computes
        /// float32 distances only to re-rank the best few at the end, so
        /// results carry exact scores. The fewest resident bytes per vector
        /// of the three: a search touches the codes and links, and float32
        /// vectors only for its finalists, so an index opened from its
        /// segment serves with the vectors left on disk until they are
        /// needed. Inserts fill layer-0 lists as the quantized traversal's.
        /// Slower than the quantized traversal at the same recall, faster
        /// than the exact one (measurements: docs/design/compact-codes.md).
        case compact
    }

    /// Creates parameters (defaults: `m` 16, `efConstruction` 200,
    /// `efSearch` 64, seed 42, exact traversal).
    public init(m: Int = 16, efConstruction: Int = 200, efSearch: Int = 64, seed: UInt64 = 42,
                traversal: Traversal = .exact) {
        self.m = m
        self.efConstruction = efConstruction
        self.efSearch = efSearch
        self.seed = seed
        self.traversal = traversal
    }

    private enum CodingKeys: String, CodingKey { case m, efConstruction, efSearch, seed, traversal }

    /// Decodes parameters; `traversal` may be absent (older encodings: exact).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        m = try c.decode(Int.self, forKey: .m)
        efConstruction = try c.decode(Int.self, forKey: .efConstruction)
        efSearch = try c.decode(Int.self, forKey: .efSearch)
        seed = try c.decode(UInt64.self, forKey: .seed)
        traversal = try c.decodeIfPresent(Traversal.self, forKey: .traversal) ?? .exact
    }

    /// Throws ``LodestoneError/invalidArgument(name:reason:)`` for values
    /// outside their ranges.
    public func validate() throws(LodestoneError) {
        guard (2...128).contains(m) else {
            throw .invalidArgument(name: "m", reason: "must be in 2...128, got \(m)")
        }
        guard (1...10_000).contains(efConstruction) else {
            throw .invalidArgument(name: "efConstruction", reason: "must be in 1...10000, got \(efConstruction)")
        }
        guard (1...10_000).contains(efSearch) else {
            throw .invalidArgument(name: "efSearch", reason: "must be in 1...10000, got \(efSearch)")
        }
    }
}

extension HNSWParameters.Traversal {
    /// The traversal's number in persisted files (FORMAT.md): 0 exact, 1
    /// quantized, 2 compact.
    var storageCode: UInt64 {
        switch self {
        case .exact: return 0
        case .quantized: return 1
        case .compact: return 2
        }
    }

    /// The traversal stored as `code`, or nil for an unknown number.
    init?(storageCode code: UInt64) {
        switch code {
        case 0: self = .exact
        case 1: self = .quantized
        case 2: self = .compact
        default: return nil
        }
    }
}
