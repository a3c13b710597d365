import CLodestoneKernels
import Synchronization

/// One 8-bit code per vector (LVQ's scheme with 256 levels: the residual
/// against a fixed center, between the residual's own extremes), which the
/// construction of a compact index's graph ranks candidates by instead of
/// float32 vectors: 400 bytes a vector at 384-d against 1,536, so a large
/// build's working set is a quarter of its vectors, and the graph comes out
/// as good (measurements: docs/design/compact-codes.md). Searches never
/// read them. The record layout and the estimator are in
/// `lodestone_kernels.h`.
///
/// Only an index built from empty in this process has them: the center is
/// the mean of its first batch. They are not persisted; an index opened
/// from a segment links its new nodes on float32, as other indexes do.
final class BuildCodes: @unchecked Sendable {
    // @unchecked: records follow the arena's publication protocol; `center`
    // is written once, before `ready` is released.

    let dimension: Int
    /// Components of a prepared query: the dimension rounded up to 16.
    let paddedDimension: Int
    let euclidean: Bool
    let records: NodeArena
    private(set) var center: [Float]
    /// |center|^2, for estimates between two codes.
    private(set) var centerNorm2: Float = 0
    /// Set (release) once the center is fixed; every node written after
    /// has its code.
    let ready = Atomic<Bool>(false)
    /// Set before the first insert to link on float32 instead (tests
    /// compare the two graphs).
    let declined = Atomic<Bool>(false)

    init(dimension: Int, metric: Metric) {
        self.dimension = dimension
        paddedDimension = (dimension + 15) & ~15
        euclidean = metric == .euclidean
        records = NodeArena(stride: lodestone_bc_record_bytes(dimension))
        center = [Float](repeating: 0, count: dimension)
    }

    /// Whether nodes have codes (acquire: the center is then visible).
    var isReady: Bool { ready.load(ordering: .acquiring) }

    /// Bytes allocated for codes.
    var allocatedBytes: Int { records.allocatedBytes }

    /// Fixes the center to the mean of `count` rows at `rows` (an index with
    /// no nodes yet, the writer's lock held).
    func start(rows: UnsafePointer<Float>, count: Int) {
        center = CodeCenter.mean(rows: rows, count: count, dimension: dimension)
        centerNorm2 = Float(center.reduce(0.0) { $0 + Double($1) * Double($1) })
        ready.store(true, ordering: .releasing)
    }

    /// Writes node `id`'s code (the writer's lock held, codes ready).
    func encode(_ id: UInt32, vector: UnsafePointer<Float>) {
        records.reserve(Int(id) + 1)
        center.withUnsafeBufferPointer { c in
            lodestone_bc_encode(vector, c.baseAddress!, dimension, records.record(id))
        }
    }

    /// A query for ``estimate(_:records:count:into:)``: its components,
    /// padded with zeros, and its numbers.
    final class Query {
        let components: UnsafeMutablePointer<Float>
        var parameters = lodestone_cc_query()

        init(components count: Int) {
            components = .allocate(capacity: count)
            components.initialize(repeating: 0, count: count)
        }
        deinit { components.deallocate() }
    }

    /// Prepares `q` (a prepared vector: normalized for cosine).
    func prepare(_ q: UnsafePointer<Float>) -> Query {
        let query = Query(components: paddedDimension)
        query.components.update(from: q, count: dimension)
        center.withUnsafeBufferPointer { c in
            lodestone_bc_prepare(q, c.baseAddress!, dimension, euclidean ? 1 : 0, &query.parameters)
        }
        return query
    }

    /// Rank-value estimates from node `a`'s code to those of `nodes`, codes
    /// against codes (no vector is decoded or read).
    func estimate(from a: UInt32, nodes: UnsafeBufferPointer<UInt32>, into out: UnsafeMutablePointer<Float>) {
        withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: max(nodes.count, 1)) { rows in
            for (j, id) in nodes.enumerated() { rows[j] = UnsafeRawPointer(records.record(id)) }
            lodestone_bc_pair_estimates(records.record(a), centerNorm2, dimension, euclidean ? 1 : 0,
                                        rows.baseAddress!, nodes.count, out)
        }
    }

    /// The rank-value estimate between nodes `a` and `b`, codes against codes.
    @inline(__always) func estimate(between a: UInt32, _ b: UInt32) -> Float {
        var row: UnsafeRawPointer? = UnsafeRawPointer(records.record(b))
        var out: Float = 0
        withUnsafePointer(to: &row) { r in
            lodestone_bc_pair_estimates(records.record(a), centerNorm2, dimension, euclidean ? 1 : 0, r, 1, &out)
        }
        return out
    }

    /// Rank-value estimates (lower is nearer, on the index's rank scale) of
    /// `count` nodes' codes.
    @inline(__always) func estimate(_ query: Query, records rows: UnsafePointer<UnsafeRawPointer?>,
                                    count: Int, into out: UnsafeMutablePointer<Float>) {
        withUnsafePointer(to: query.parameters) { p in
            lodestone_bc_estimates(query.components, p, dimension, rows, count, out)
        }
    }
}
