import CLodestoneKernels
import Synchronization

/// One bit per component of every vector of a graph (RaBitQ's 1-bit code,
/// Gao & Long, SIGMOD 2024, without its random rotation), with the few
/// per-vector numbers its inner-product estimator needs; the record layout
/// and the estimator are in `lodestone_kernels.h`.
///
/// A scan of sign codes reads 64 bytes a vector instead of 1,536 (384-d)
/// and costs a few dozen popcounts, so ranking ten thousand filtered
/// records by estimate, then scoring the best `ef` exactly, costs
/// less than a filtered graph walk (``HNSWIndex``'s `quantized-scan` plan).
///
/// Codes are derived data, kept in memory only: built from the vectors the
/// first time a plan needs them (the center is the mean of the live vectors
/// then, and stays fixed), and written for each vector added after that.
/// Readers use them without a lock; the writer builds and extends them
/// under the graph's writer lock.
final class SignCodes: @unchecked Sendable {
    // @unchecked: records follow the arena's publication protocol; `center`
    // is written once, before `ready` is released.

    let dimension: Int
    let words: Int
    let records: NodeArena
    private(set) var center: [Float]
    /// The clusters a filter's scan ranks its matches by, nearest first; nil
    /// for an index too small to partition (built with the codes).
    private(set) var partition: CodePartition?
    /// Set (release) once every node below the node count has a code.
    let ready = Atomic<Bool>(false)

    init(dimension: Int) {
        self.dimension = dimension
        words = lodestone_sign_words(dimension)
        records = NodeArena(stride: lodestone_sign_record_bytes(dimension))
        center = [Float](repeating: 0, count: dimension)
    }

    /// Whether codes exist for every node (acquire: the records are then visible).
    var isReady: Bool { ready.load(ordering: .acquiring) }

    /// Builds the codes of nodes `0..<count` (the writer's lock held, codes
    /// not ready): the center is the mean of the vectors `isLive` admits;
    /// an index of ``CodePartition/minimumNodes`` or more is partitioned too,
    /// by `metric`'s rank values.
    func build(count: Int, vector: (UInt32) -> UnsafePointer<Float>, isLive: (UInt32) -> Bool, threads: Int,
               metric: Metric, kernels: DistanceKernels) {
        center = CodeCenter.mean(count: count, dimension: dimension, vector: vector, isLive: isLive)
        partition = CodePartition(nodes: count, dimension: dimension, metric: metric, kernels: kernels,
                                  vector: vector, isLive: isLive, threads: threads)
        records.reserve(count)
        CodeCenter.encodeAll(count: count, center: center, threads: threads) { id, c in
            lodestone_sign_encode(vector(id), c, dimension, records.record(id))
        }
        ready.store(true, ordering: .releasing)
    }

    /// Writes node `id`'s code and cluster (the writer's lock held, codes
    /// ready).
    func encode(_ id: UInt32, vector: UnsafePointer<Float>) {
        partition?.add(id, vector: vector)
        records.reserve(Int(id) + 1)
        center.withUnsafeBufferPointer { c in
            lodestone_sign_encode(vector, c.baseAddress!, dimension, records.record(id))
        }
    }

    /// A query's bit planes and quantization, for ``estimate(_:records:count:into:)``.
    struct Query: ~Copyable {
        let planes: UnsafeMutablePointer<UInt64>
        var parameters = lodestone_sign_query()

        init(words: Int) { planes = .allocate(capacity: 4 * words) }
        deinit { planes.deallocate() }
    }

    /// Prepares `q` (a prepared query: normalized for cosine).
    func prepare(_ q: UnsafePointer<Float>, euclidean: Bool) -> Query {
        var query = Query(words: words)
        center.withUnsafeBufferPointer { c in
            lodestone_sign_prepare(q, c.baseAddress!, dimension, euclidean ? 1 : 0, query.planes, &query.parameters)
        }
        return query
    }

    /// Rank-value estimates (lower is nearer, offset by a per-query
    /// constant) of `count` nodes' codes.
    func estimate(_ query: borrowing Query, records rows: UnsafePointer<UnsafeRawPointer?>, count: Int,
                  into out: UnsafeMutablePointer<Float>) {
        withUnsafePointer(to: query.parameters) { p in
            lodestone_sign_estimates(query.planes, words, p, rows, count, out)
        }
    }
}
