import CLodestoneKernels

/// A k-means partition of an index's vectors into clusters (an IVF coarse
/// quantizer, Jégou et al. 2011), so a filter's quantized scan can rank its
/// matches cluster by cluster, nearest clusters first, and stop once it has
/// ranked enough of them (``HNSWIndex``'s clustered scan): the true nearest
/// matches sit in the query's nearest clusters.
///
/// Derived data like ``SignCodes``, built with them and kept in memory:
/// centroids from k-means on a sample of the live vectors, then every node's
/// cluster; each vector added later joins its nearest centroid's cluster
/// (the centroids stay fixed). Readers use it without a lock; the writer
/// builds and extends it under the graph's writer lock.
final class CodePartition: @unchecked Sendable {
    // @unchecked: centroids are written once, in init; `clusters` follows the
    // arena's publication protocol.

    /// Indexes smaller than this are not partitioned: their scans rank every
    /// match.
    static let minimumNodes = 16_384

    /// The clusters for an index of `nodes` vectors, `live` of them live:
    /// about 0.8 sqrt(nodes) (the rule of thumb of IVF indexes), from 16 to
    /// 256 (assigning every vector costs `256 x dimension` multiply-adds a
    /// vector, and the partition is built on a filtered query), and no more
    /// than the live vectors; nil under ``minimumNodes``.
    static func clusterCount(nodes: Int, live: Int) -> Int? {
        guard nodes >= minimumNodes else { return nil }
        return max(1, min(live, 256, max(16, Int((Double(nodes).squareRoot() * 0.8).rounded()))))
    }

    let dimension: Int
    let metric: Metric
    let kernels: DistanceKernels
    /// Centroids, `count` rows of `dimension` floats.
    let centroids: [Float]
    /// The number of clusters.
    let count: Int
    /// Each node's cluster, a UInt16.
    let clusters: NodeArena

    /// Partitions nodes `0..<nodes` (the writer's lock held) into
    /// ``clusterCount(nodes:live:)`` clusters, or nil under ``minimumNodes``:
    /// k-means on a sample of the live ones, then every node's nearest
    /// centroid, on up to `threads` threads. The rank values are the
    /// metric's: squared L2 for euclidean, negated inner products otherwise
    /// (cosine vectors arrive normalized, and so are its centroids).
    init?(nodes: Int, dimension: Int, metric: Metric, kernels: DistanceKernels,
          vector: (UInt32) -> UnsafePointer<Float>, isLive: (UInt32) -> Bool, threads: Int) {
        guard nodes >= CodePartition.minimumNodes else { return nil }
        self.dimension = dimension
        self.metric = metric
        self.kernels = kernels
        let live = (0..<UInt32(nodes)).filter(isLive)
        let k = CodePartition.clusterCount(nodes: nodes, live: live.count)!
        count = k
        // Every (live / samples)-th live node: deterministic, spread over
        // the index's history.
        let samples = min(live.count, 64 * k)
        let step = Double(live.count) / Double(max(samples, 1))
        let sample = (0..<samples).map { live[Int(Double($0) * step)] }
        var centers = [Float](repeating: 0, count: k * dimension)
        // No live vector: one cluster, its centroid zeros.
        for c in 0..<(samples > 0 ? k : 0) {
            let row = vector(sample[c * samples / k])
            for i in 0..<dimension { centers[c * dimension + i] = row[i] }
        }
        let assigned = UnsafeMutableBufferPointer<Int32>.allocate(capacity: max(samples, 1))
        defer { assigned.deallocate() }
        for _ in 0..<(samples > 0 ? 10 : 0) {
            // Threads write distinct elements.
            CodePartition.assign(samples, rows: { vector(sample[Int($0)]) }, centroids: centers, clusters: k,
                                 dimension: dimension, metric: metric, threads: threads) { assigned[$0] = Int32($1) }
            var sums = [Double](repeating: 0, count: k * dimension)
            var sizes = [Int](repeating: 0, count: k)
            for s in 0..<samples {
                let id = sample[s]
                let c = Int(assigned[s]), row = vector(id)
                sizes[c] += 1
                for i in 0..<dimension { sums[c * dimension + i] += Double(row[i]) }
            }
            // An empty cluster keeps its centroid.
            for c in 0..<k where sizes[c] > 0 {
                var norm = 0.0
                for i in 0..<dimension {
                    let v = sums[c * dimension + i] / Double(sizes[c])
                    sums[c * dimension + i] = v
                    norm += v * v
                }
                let scale = metric == .cosine && norm > 0 ? 1 / norm.squareRoot() : 1
                for i in 0..<dimension { centers[c * dimension + i] = Float(sums[c * dimension + i] * scale) }
            }
        }
        centroids = centers
        clusters = NodeArena(stride: MemoryLayout<UInt16>.stride)
        clusters.reserve(nodes)
        CodePartition.assign(nodes, rows: vector, centroids: centers, clusters: k, dimension: dimension,
                             metric: metric, threads: threads) { id, c in
            clusters.record(UInt32(id)).storeBytes(of: UInt16(c), as: UInt16.self)
        }
    }

    /// Node `id`'s cluster.
    @inline(__always) func cluster(_ id: UInt32) -> Int {
        Int(UnsafeRawPointer(clusters.record(id)).load(as: UInt16.self))
    }

    /// Puts node `id` (vector `v`) in its nearest centroid's cluster (the
    /// writer's lock held).
    func add(_ id: UInt32, vector v: UnsafePointer<Float>) {
        clusters.reserve(Int(id) + 1)
        let nearest = withUnsafeTemporaryAllocation(of: Float.self, capacity: count) { values in
            rank(v, into: values.baseAddress!)
            var best = 0
            for c in 1..<count where values[c] < values[best] { best = c }
            return best
        }
        clusters.record(id).storeBytes(of: UInt16(nearest), as: UInt16.self)
    }

    /// The rank values of `q` (prepared) against every centroid.
    func rank(_ q: UnsafePointer<Float>, into values: UnsafeMutablePointer<Float>) {
        centroids.withUnsafeBufferPointer { c in
            kernels.rankValues(metric, q, c.baseAddress!, stride: dimension, count: count, dimension: dimension,
                               into: values)
        }
    }

    /// The nearest clusters to `q` by their centroids' rank values (ties
    /// by cluster number) that hold `target` of `counts` (one per cluster),
    /// about nearest first (``lodestone_nearest_clusters``).
    func nearest(_ q: UnsafePointer<Float>, counts: UnsafePointer<UInt32>, target: Int) -> [UInt16] {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: count) { values in
            withUnsafeTemporaryAllocation(of: UInt16.self, capacity: count) { scratch in
                rank(q, into: values.baseAddress!)
                return [UInt16](unsafeUninitializedCapacity: count) { order, written in
                    written = lodestone_nearest_clusters(values.baseAddress!, counts, count, target,
                                                         order.baseAddress!, scratch.baseAddress!)
                }
            }
        }
    }

    /// Calls `body(i, cluster)` with the nearest centroid of each of `n`
    /// rows: inner products a block of rows at a time by `sgemm`.
    private static func assign(_ n: Int, rows: (UInt32) -> UnsafePointer<Float>, centroids: [Float], clusters k: Int,
                               dimension d: Int, metric: Metric, threads: Int, _ body: (Int, Int) -> Void) {
        let block = 1_024
        BLAS.prepareForTiledCalls()
        let norms = (0..<k).map { c in (0..<d).reduce(Float(0)) { $0 + centroids[c * d + $1] * centroids[c * d + $1] } }
        centroids.withUnsafeBufferPointer { c in
            parallelFor(count: n, threads: min(threads, max(1, n / block)), grain: block) { run in
                let x = UnsafeMutablePointer<Float>.allocate(capacity: run.count * d)
                let dots = UnsafeMutablePointer<Float>.allocate(capacity: run.count * k)
                defer {
                    x.deallocate()
                    dots.deallocate()
                }
                for (r, i) in run.enumerated() { (x + r * d).update(from: rows(UInt32(i)), count: d) }
                BLAS.multiplyTransposed(m: run.count, n: k, k: d, a: x, lda: d, b: c.baseAddress!, ldb: d, c: dots,
                                        ldc: k)
                for (r, i) in run.enumerated() {
                    let row = dots + r * k
                    var best = 0
                    var bestValue = Float.infinity
                    for j in 0..<k {
                        // Squared L2 less the row's own norm, or the negated inner product.
                        let value = metric == .euclidean ? norms[j] - 2 * row[j] : -row[j]
                        if value < bestValue { (best, bestValue) = (j, value) }
                    }
                    body(i, best)
                }
            }
        }
    }
}
