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

    /// Creates parameters (defaults: `m` 16, `efConstruction` 200,
    /// `efSearch` 64, seed 42).
    public init(m: Int = 16, efConstruction: Int = 200, efSearch: Int = 64, seed: UInt64 = 42) {
        self.m = m
        self.efConstruction = efConstruction
        self.efSearch = efSearch
        self.seed = seed
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
