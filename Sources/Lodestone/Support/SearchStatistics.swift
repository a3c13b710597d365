// How a search ran: the plan, and the work it took (`explain`). Every
// index reports it; the planner (HNSWIndex+FilteredSearch) chooses the plan.

/// How a search ran.
public enum SearchPlan: String, Sendable, Codable {
    /// No filter: the HNSW graph was searched.
    case graph = "hnsw"
    /// The graph was walked scoring only records that pass the filter
    /// (reached directly or through a neighbour that does not pass).
    case filteredGraph = "filtered-hnsw"
    /// Most records match: the graph was walked as if unfiltered, and the
    /// results are the best records it scored that pass the filter.
    case postFilteredGraph = "post-filtered-hnsw"
    /// Few records match: every matching vector was compared (exact).
    case exactScan = "exact-scan"
    /// Every matching record was ranked by its sign code (an estimate), and
    /// the best `ef` were compared exactly.
    case quantizedScan = "quantized-scan"
    /// A flat index compared the query with every (matching) vector (exact).
    case flatScan = "flat-scan"
    /// A sparse query: the postings of its terms were scored term at a
    /// time, pruned where they could not change the top k (exact).
    case sparse = "sparse"
    /// A dense and a sparse query: each side's best candidates were merged
    /// and every candidate scored on both (``HybridFusion``).
    case hybrid = "hybrid"
}

/// What a search did: the plan the planner chose and the work it took
/// (`explain` in the public API).
public struct SearchStatistics: Sendable, Hashable, Codable {
    /// The strategy that ran.
    public var plan: SearchPlan
    /// Live records the search ranged over.
    public var candidates: Int
    /// Records passing the filter (equal to `candidates` without one). The
    /// metadata index counts them exactly, so the planner's estimate is the
    /// actual number.
    public var matches: Int
    /// `matches / candidates`.
    public var selectivity: Double { candidates > 0 ? Double(matches) / Double(candidates) : 0 }
    /// The beam width used (0 for scans).
    public var ef: Int
    /// Nodes whose neighbour lists were read (graph plans), vectors
    /// compared (exact scan), or sign codes ranked (quantized scan).
    public var nodesVisited: Int
    /// Exact distances computed (for the quantized scan, its finalists').
    public var distancesComputed: Int
    /// The planner's estimate of the exact scan's cost, in graph-distance
    /// units (0 when no plan was chosen between the two).
    public var estimatedScanCost: Double
    /// The planner's estimate of the filtered graph walk's cost, in the
    /// same units (0 when no plan was chosen between the two).
    public var estimatedGraphCost: Double
    /// The planner's estimate of the quantized scan's cost, in the same
    /// units (0 when no plan was chosen).
    public var estimatedQuantizedCost: Double

    /// Statistics of a plan.
    public init(plan: SearchPlan, candidates: Int, matches: Int, ef: Int, nodesVisited: Int, distancesComputed: Int,
                estimatedScanCost: Double = 0, estimatedGraphCost: Double = 0, estimatedQuantizedCost: Double = 0) {
        self.plan = plan
        self.candidates = candidates
        self.matches = matches
        self.ef = ef
        self.nodesVisited = nodesVisited
        self.distancesComputed = distancesComputed
        self.estimatedScanCost = estimatedScanCost
        self.estimatedGraphCost = estimatedGraphCost
        self.estimatedQuantizedCost = estimatedQuantizedCost
    }
}
