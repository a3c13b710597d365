import CLodestoneKernels
import Synchronization

/// One 4-bit code per vector (LVQ's scheme: the residual against a fixed
/// center, 16 levels between the residual's own extremes), for the compact
/// traversal (``HNSWParameters/Traversal/compact``): its layer-0 walk
/// ranks every neighbour by gathering its code, a few cache lines, so a
/// search reads neither float32 vectors (but its finalists') nor
/// neighbour-code blocks. The record layout and the estimator are in
/// `lodestone_kernels.h`; why this scheme, in docs/design/compact-codes.md.
///
/// A graph's construction ranks on them too: the new node's vector against
/// codes in its searches, and codes against codes when it chooses links
/// (with two factors a code, kept beside it: ``pairFactors``), so a build
/// reads no float32 vector but the new node's.
///
/// The center is the mean of the first vectors the codes see (the first
/// batch added to an empty index, or the live vectors when the codes are
/// built for an index that has some) and then stays: a code depends on its
/// vector and the center only, so it is written once per vector and
/// persisted with the segment. Readers use codes without a lock; the
/// writer encodes under the graph's writer lock.
final class CompactCodes: @unchecked Sendable {
    // @unchecked: records follow the arena's publication protocol; `center`
    // is written once, before `ready` is released.

    let dimension: Int
    let euclidean: Bool
    let records: NodeArena
    /// Per node, its code's two factors for estimates between codes (A, R
    /// in `lodestone_kernels.h`): written with each code; for codes adopted
    /// from a segment, computed on first use (``pairFactor(_:)``), so a
    /// first write after opening reads only the codes it ranks. Not
    /// persisted; a record of all 0xFF bytes is one not computed yet.
    let pairFactors = NodeArena(stride: 8, fill: 0xFF)
    private(set) var center: [Float]
    /// |center|^2, for estimates between codes.
    private(set) var centerNorm2: Float = 0
    /// Set (release) once every node's factors are written or marked for
    /// computing on first use: new nodes link on the codes from then on.
    let pairsReady = Atomic<Bool>(false)
    /// Set before the first insert or removal to link on float32 instead
    /// (tests compare the two graphs).
    let linksOnFloat = Atomic<Bool>(false)
    /// Set (release) once the center is fixed and every node below the node
    /// count has a code.
    let ready = Atomic<Bool>(false)
    /// Whether the segment deltas are written against holds every code (so
    /// a delta can carry the codes changed since); the writer's lock.
    var inBase = false
    /// Whether the last whole-segment persist wrote the codes; the writer's lock.
    var inLastPersist = false
    /// Whether the center came from a segment (codes built later keep it).
    private(set) var centerAdopted = false

    init(dimension: Int, metric: Metric) {
        self.dimension = dimension
        euclidean = metric == .euclidean
        records = NodeArena(stride: lodestone_cc_record_bytes(dimension))
        center = [Float](repeating: 0, count: dimension)
    }

    /// Whether every node has its code (acquire: codes and center are then visible).
    var isReady: Bool { ready.load(ordering: .acquiring) }

    /// Bytes allocated for codes and their factors.
    var allocatedBytes: Int { records.allocatedBytes + pairFactors.allocatedBytes }

    /// Fixes the center to the mean of `count` rows at `rows` and marks the
    /// codes ready: for an index with no nodes yet (the writer's lock held).
    func start(rows: UnsafePointer<Float>, count: Int) {
        setCenter(CodeCenter.mean(count: count, dimension: dimension, vector: { rows + Int($0) * dimension },
                                  isLive: { _ in true }))
        ready.store(true, ordering: .releasing)
    }

    /// Adopts a persisted center (before the codes are adopted or built).
    func adopt(center persisted: [Float]) {
        precondition(persisted.count == dimension)
        setCenter(persisted)
        centerAdopted = true
    }

    /// Builds the codes of nodes `0..<count` (the writer's lock held, codes
    /// not ready): the center is the mean of the vectors `isLive` admits,
    /// unless `keepCenter` (a persisted center was adopted).
    func build(count: Int, vector: (UInt32) -> UnsafePointer<Float>, isLive: (UInt32) -> Bool, keepCenter: Bool,
               threads: Int) {
        if !keepCenter {
            setCenter(CodeCenter.mean(count: count, dimension: dimension, vector: vector, isLive: isLive))
        }
        records.reserve(count)
        pairFactors.reserve(count)
        CodeCenter.encodeAll(count: count, center: center, threads: threads) { id, c in
            records.markDirty(id)
            lodestone_cc_encode(vector(id), c, dimension, records.record(id))
            lodestone_cc_pair_factors(records.record(id), c, dimension, factors(id))
        }
        ready.store(true, ordering: .releasing)
        pairsReady.store(true, ordering: .releasing)
    }

    private func setCenter(_ c: [Float]) {
        center = c
        centerNorm2 = Float(c.reduce(0.0) { $0 + Double($1) * Double($1) })
    }

    @inline(__always) private func factors(_ id: UInt32) -> UnsafeMutablePointer<Float> {
        pairFactors.record(id).assumingMemoryBound(to: Float.self)
    }

    private static let notComputed = UInt32.max

    /// Node `id`'s pair factors, computed from its code the first time
    /// (pairs ready). Linking threads may compute the same node's at once:
    /// they store the same bits, the first word last, so a reader that sees
    /// it sees both.
    @inline(__always) func pairFactor(_ id: UInt32) -> SIMD2<Float> {
        let words = pairFactors.record(id).assumingMemoryBound(to: UInt32.self)
        let a = lodestone_load_u32(words)
        if a != CompactCodes.notComputed { return SIMD2(Float(bitPattern: a), Float(bitPattern: lodestone_load_u32(words + 1))) }
        return computePairFactor(id, into: words)
    }

    @inline(never) private func computePairFactor(_ id: UInt32, into words: UnsafeMutablePointer<UInt32>) -> SIMD2<Float> {
        var f = SIMD2<Float>()
        withUnsafeMutableBytes(of: &f) { out in
            center.withUnsafeBufferPointer { c in
                lodestone_cc_pair_factors(records.record(id), c.baseAddress!, dimension,
                                          out.baseAddress!.assumingMemoryBound(to: Float.self))
            }
        }
        // An id past the arena (a corrupt link) reads the shared fill chunk: leave it as it is.
        guard Int(id) < pairFactors.capacity else { return f }
        lodestone_store_u32(words + 1, f[1].bitPattern)
        lodestone_store_u32(words, f[0].bitPattern)
        return f
    }

    /// Makes room for the factors of nodes `0..<count` (codes adopted from
    /// a segment or a delta), each computed on first use, and lets new
    /// nodes link on the codes: the writer's lock held, codes ready.
    func preparePairs(count: Int) {
        guard !pairsReady.load(ordering: .acquiring), !linksOnFloat.load(ordering: .relaxed) else { return }
        pairFactors.reserve(count)
        pairsReady.store(true, ordering: .releasing)
    }

    /// Writes node `id`'s code (the writer's lock held, codes ready).
    func encode(_ id: UInt32, vector: UnsafePointer<Float>) {
        records.reserve(Int(id) + 1)
        pairFactors.reserve(Int(id) + 1)
        records.markDirty(id)
        center.withUnsafeBufferPointer { c in
            lodestone_cc_encode(vector, c.baseAddress!, dimension, records.record(id))
            lodestone_cc_pair_factors(records.record(id), c.baseAddress!, dimension, factors(id))
        }
    }

    /// Rank-value estimates from node `a`'s code to those of `nodes`, codes
    /// against codes (pairs ready).
    func estimate(from a: UInt32, nodes: UnsafeBufferPointer<UInt32>, into out: UnsafeMutablePointer<Float>) {
        let n = nodes.count
        withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: max(n, 1)) { rows in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: max(2 * n, 2)) { f in
                for (j, id) in nodes.enumerated() {
                    rows[j] = UnsafeRawPointer(records.record(id))
                    let p = pairFactor(id)
                    f[2 * j] = p[0]
                    f[2 * j + 1] = p[1]
                }
                var own = pairFactor(a)
                withUnsafeBytes(of: &own) { fa in
                    lodestone_cc_pair_estimates(records.record(a), fa.baseAddress!.assumingMemoryBound(to: Float.self),
                                                centerNorm2, dimension, euclidean ? 1 : 0, rows.baseAddress!,
                                                f.baseAddress!, n, out)
                }
            }
        }
    }

    /// The neighbour choice on codes over the nodes `ids`, ranked `ranks`
    /// from a base node (``lodestone_cc_select``): appends to `kept`
    /// (holding `keptCount` indices into `ids`, room for `limit`) the index
    /// of each entry, in order, not skipped by `skip` and not dominated by
    /// one kept already; returns the new count (pairs ready).
    func select(_ ids: UnsafeBufferPointer<UInt32>, ranks: UnsafePointer<Float>, skip: UnsafePointer<UInt8>?,
                kept: UnsafeMutablePointer<UInt32>, keptCount: Int, limit: Int, rule: SelectionRule) -> Int {
        let n = ids.count
        guard n > 0 else { return keptCount }
        return withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: n) { rows in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * n) { f in
                for (j, id) in ids.enumerated() {
                    rows[j] = UnsafeRawPointer(records.record(id))
                    let p = pairFactor(id)
                    f[2 * j] = p[0]
                    f[2 * j + 1] = p[1]
                }
                return lodestone_cc_select(rows.baseAddress!, f.baseAddress!, ranks, skip, n, kept, keptCount, limit,
                                           rule.separation, rule.alpha, rule.beta, centerNorm2, dimension,
                                           euclidean ? 1 : 0)
            }
        }
    }

    /// When a candidate at rank value `rank` from the base is dominated by
    /// a kept neighbour at rank value (or estimate) `e` from it:
    /// `separation * (alpha + beta * e) < alpha + beta * rank`.
    struct SelectionRule {
        var separation: Float = 1
        var alpha: Float = 0
        var beta: Float = 1

        /// Malkov & Yashunin's heuristic: dominated when nearer to a kept
        /// neighbour than to the base.
        static let heuristic = SelectionRule()
    }

    /// A query's int8 components and numbers, for ``estimate(_:records:count:into:)``.
    struct Query: ~Copyable {
        let components: UnsafeMutablePointer<Int8>
        var parameters = lodestone_cc_query()

        init(bytes: Int) { components = .allocate(capacity: bytes) }
        deinit { components.deallocate() }
    }

    /// A prepared query held by reference (the graph's construction passes
    /// one down its layers).
    final class SharedQuery {
        let query: Query
        init(_ query: consuming Query) { self.query = query }
    }

    /// Prepares `q` (a prepared query: normalized for cosine).
    func prepare(_ q: UnsafePointer<Float>) -> Query {
        var query = Query(bytes: lodestone_cc_query_bytes(dimension))
        center.withUnsafeBufferPointer { c in
            lodestone_cc_prepare(q, c.baseAddress!, dimension, euclidean ? 1 : 0, query.components, &query.parameters)
        }
        return query
    }

    /// Rank-value estimates (lower is nearer, on the index's rank scale) of
    /// `count` nodes' codes.
    @inline(__always) func estimate(_ query: borrowing Query, records rows: UnsafePointer<UnsafeRawPointer?>,
                                    count: Int, into out: UnsafeMutablePointer<Float>) {
        withUnsafePointer(to: query.parameters) { p in
            lodestone_cc_estimates(query.components, p, dimension, rows, count, out)
        }
    }
}
