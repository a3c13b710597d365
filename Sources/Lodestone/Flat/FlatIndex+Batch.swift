import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a batch search spent its time.
public struct BatchSearchStatistics: Sendable {
    /// Queries in the batch.
    public var queries = 0
    /// Worker threads used.
    public var threads = 0
    /// Whether the GEMM path ran (small batches use the single-query scan).
    public var usedGEMM = false
    /// Seconds inside `sgemm`, summed over threads.
    public var gemmSeconds = 0.0
    /// Seconds turning GEMM output into candidates, summed over threads.
    public var selectionSeconds = 0.0
    /// Seconds re-scoring candidates with the exact kernel, summed over threads.
    public var rescoreSeconds = 0.0
    /// Wall-clock seconds of the whole batch.
    public var wallSeconds = 0.0
    /// Floating-point operations done by `sgemm` (2 · queries · rows · dimension).
    public var gemmFlops = 0.0
    /// Queries whose GEMM candidates could not be proven to hold the exact
    /// top k, and were answered by the single-query scan instead.
    public var exactFallbacks = 0

    /// The GEMM stage's rate per thread, in GFLOP/s.
    public var gemmGFLOPSPerThread: Double { gemmSeconds > 0 ? gemmFlops / gemmSeconds / 1e9 : 0 }
}

extension FlatIndex {
    /// Every processor online: now ``Parallelism/defaultThreadCount``.
    @available(*, deprecated, renamed: "Parallelism.defaultThreadCount")
    public static var defaultThreadCount: Int { Parallelism.defaultThreadCount }

    /// The top `k` for each of many queries, on `threads` threads.
    ///
    /// `queries` holds the queries one after another (a multiple of
    /// ``dimension`` floats). The result for query `i` is exactly what
    /// ``search(_:k:)`` returns for it: same keys, order and scores.
    /// - Throws: the errors of ``search(_:k:)``; a malformed query names its
    ///   position in the `name` of ``LodestoneError/invalidArgument(name:reason:)``
    ///   or is reported as the dimension/non-finite error it has.
    public func search(batch queries: [Float], k: Int, threads: Int = Parallelism.defaultThreadCount)
        throws(LodestoneError) -> [[Neighbor]]
    {
        try searchWithStatistics(batch: queries, k: k, threads: threads).results
    }

    /// ``search(batch:k:threads:)-([Float],_,_)`` for queries given as separate arrays.
    public func search(batch queries: [[Float]], k: Int, threads: Int = Parallelism.defaultThreadCount)
        throws(LodestoneError) -> [[Neighbor]]
    {
        for q in queries where q.count != dimension {
            throw .dimensionMismatch(expected: dimension, actual: q.count)
        }
        return try search(batch: queries.flatMap { $0 }, k: k, threads: threads)
    }

    /// ``search(batch:k:threads:)-([Float],_,_)``, also reporting where the time went.
    public func searchWithStatistics(batch queries: [Float], k: Int, threads: Int = Parallelism.defaultThreadCount)
        throws(LodestoneError) -> (results: [[Neighbor]], statistics: BatchSearchStatistics)
    {
        let nq = try checkBatch(queries, k: k, threads: threads)
        let start = monotonicSeconds()
        let prepared = try prepareRows(queries, count: nq)
        let kk = min(k, count)
        var stats = BatchSearchStatistics()
        stats.queries = nq
        stats.threads = threads
        let candidates: [[Candidate]]
        if nq >= Self.gemmMinimumQueries && count >= Self.gemmMinimumRows {
            candidates = prepared.rows.withUnsafeBufferPointer { q in
                gemmSearch(queries: q.baseAddress!, norms: prepared.norms, count: nq, k: kk, threads: threads,
                           statistics: &stats)
            }
        } else {
            candidates = prepared.rows.withUnsafeBufferPointer { q in
                parallelScan(queries: q.baseAddress!, count: nq, k: kk, threads: threads)
            }
        }
        stats.wallSeconds = monotonicSeconds() - start
        let metric = metric
        let results = candidates.map { list in
            list.map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) }
        }
        return (results, stats)
    }

    /// Validates a batch's arguments; returns the number of queries.
    func checkBatch(_ queries: [Float], k: Int, threads: Int) throws(LodestoneError) -> Int {
        try checkSearchable(k: k)
        guard threads >= 1 else {
            throw .invalidArgument(name: "threads", reason: "must be at least 1, got \(threads)")
        }
        guard queries.count % dimension == 0 else {
            throw .dimensionMismatch(expected: dimension, actual: queries.count % dimension)
        }
        return queries.count / dimension
    }

    /// Below this many queries the batch runs the single-query scan instead.
    static var gemmMinimumQueries: Int { 8 }
    /// Below this many rows the batch runs the single-query scan instead.
    static var gemmMinimumRows: Int { 256 }
    /// Queries per GEMM tile.
    static let queryTile = 256
    /// Rows per GEMM tile: the tile of scores (queryTile × rowTile floats)
    /// stays within a core's L2 cache.
    static let rowTile = 1024

    /// Candidates kept per query before re-scoring: a margin over `k`, so
    /// the rounding of the GEMM form can never push a true neighbour out.
    static func candidateCount(k: Int, rows: Int) -> Int {
        min(rows, k + 16 + k / 4)
    }

    /// The exact single-query scan for each query, spread over threads.
    private func parallelScan(queries: UnsafePointer<Float>, count nq: Int, k: Int, threads: Int) -> [[Candidate]] {
        let out = UnsafeMutableBufferPointer<[Candidate]>.allocate(capacity: nq)
        out.initialize(repeating: [])
        defer { out.deinitialize().deallocate() }
        let d = dimension
        parallelFor(count: nq, threads: threads) { run in
            for i in run { out[i] = scan(query: queries + i * d, k: k) }
        }
        return Array(out)
    }

    /// How a batch is cut into GEMM jobs: query blocks, and (when there are
    /// too few blocks for the threads) row chunks too.
    struct GEMMTiling {
        /// Candidates kept per query and chunk.
        let kept: Int
        let queryTile: Int
        let chunks: Int
        let chunkRows: Int
        /// Query blocks × chunks.
        let jobs: Int

        init(queries nq: Int, rows n: Int, k: Int, threads: Int) {
            kept = FlatIndex.candidateCount(k: k, rows: n)
            queryTile = min(FlatIndex.queryTile, max(1, (nq + threads - 1) / threads))
            let queryBlocks = (nq + queryTile - 1) / queryTile
            let maxChunks = max(1, n / FlatIndex.rowTile)
            chunks = queryBlocks >= threads ? 1 : min(maxChunks, (threads + queryBlocks - 1) / queryBlocks)
            chunkRows = (n + chunks - 1) / chunks
            jobs = queryBlocks * chunks
        }
    }

    /// Each query's candidate pool: `chunks` heaps of `kept` slots (row
    /// slots as ids, GEMM rank values as distances) and their fill counts.
    struct CandidatePool {
        let candidates: UnsafeMutablePointer<Candidate>
        let counts: UnsafeMutablePointer<Int>

        init(queries nq: Int, tiling: GEMMTiling) {
            candidates = .allocate(capacity: nq * tiling.chunks * tiling.kept)
            counts = .allocate(capacity: nq * tiling.chunks)
        }

        func deallocate() {
            candidates.deallocate()
            counts.deallocate()
        }
    }

    /// GEMM candidates, then exact re-scoring, for `nq` prepared queries.
    /// With `allowed` (keys; `mask` the same rows by slot), only those rows
    /// are candidates, and `k` must not exceed their number.
    func gemmSearch(
        queries: UnsafePointer<Float>, norms queryNorms: [Float], count nq: Int, k: Int, threads: Int,
        allowed: (keys: Bitset, slots: Bitset, matches: Int)? = nil, statistics: inout BatchSearchStatistics
    ) -> [[Candidate]] {
        BLAS.prepareForTiledCalls()
        let tiling = GEMMTiling(queries: nq, rows: store.count, k: k, threads: threads)
        let pool = CandidatePool(queries: nq, tiling: tiling)
        let perThread = UnsafeMutableBufferPointer<BatchSearchStatistics>.allocate(capacity: threads)
        perThread.initialize(repeating: BatchSearchStatistics())
        let results = UnsafeMutableBufferPointer<[Candidate]>.allocate(capacity: nq)
        results.initialize(repeating: [])
        defer {
            pool.deallocate()
            perThread.deallocate()
            results.deinitialize().deallocate()
        }
        let nextJob = Atomic<Int>(0)
        let nextQuery = Atomic<Int>(0)
        let fallbacks = Atomic<Int>(0)

        store.keys.withUnsafeBufferPointer { keys in
            store.squaredNorms.withUnsafeBufferPointer { rowNorms in
                queryNorms.withUnsafeBufferPointer { qNorms in
                    // Stage 1: candidates from GEMM tiles, a job at a time.
                    parallelRun(threads: threads) { worker in
                        var local = BatchSearchStatistics()
                        let tile = UnsafeMutablePointer<Float>.allocate(capacity: tiling.queryTile * Self.rowTile)
                        let heaps = UnsafeMutablePointer<TopKHeap>.allocate(capacity: tiling.queryTile)
                        defer {
                            tile.deallocate()
                            heaps.deallocate()
                        }
                        while true {
                            let job = nextJob.add(1, ordering: .relaxed).oldValue
                            if job >= tiling.jobs { break }
                            gemmCandidates(job: job, tiling: tiling, queries: queries, count: nq, queryNorms: qNorms,
                                           rowNorms: rowNorms.baseAddress!, mask: allowed?.slots, tile: tile,
                                           heaps: heaps, pool: pool, statistics: &local)
                        }
                        perThread[worker] = local
                    }
                    // Stage 2: re-score each query's candidates exactly.
                    parallelRun(threads: threads) { worker in
                        let r0 = monotonicSeconds()
                        var exact: [Candidate] = []
                        exact.reserveCapacity(tiling.chunks * tiling.kept)
                        while true {
                            let qi = nextQuery.add(1, ordering: .relaxed).oldValue
                            if qi >= nq { break }
                            let q = queries + qi * dimension
                            if let best = rescore(query: q, index: qi, k: k, tiling: tiling, pool: pool, keys: keys,
                                                  queryNorm: qNorms[qi], into: &exact) {
                                results[qi] = best
                                continue
                            }
                            // The bound was not met: an exact scan decides.
                            fallbacks.add(1, ordering: .relaxed)
                            if let allowed {
                                results[qi] = filteredScan(query: q, k: k, allowed: allowed.keys, matches: allowed.matches).best
                            } else {
                                results[qi] = scan(query: q, k: k)
                            }
                        }
                        perThread[worker].rescoreSeconds += monotonicSeconds() - r0
                    }
                }
            }
        }
        statistics.usedGEMM = true
        statistics.exactFallbacks = fallbacks.load(ordering: .relaxed)
        for s in perThread {
            statistics.gemmSeconds += s.gemmSeconds
            statistics.selectionSeconds += s.selectionSeconds
            statistics.rescoreSeconds += s.rescoreSeconds
            statistics.gemmFlops += s.gemmFlops
        }
        return Array(results)
    }

    /// One job of stage 1: a block of queries against a chunk of rows, tile
    /// by tile (`cblas_sgemm` into `tile`, then each query's selection into
    /// its heap in the pool).
    @inline(__always)
    private func gemmCandidates(job: Int, tiling: GEMMTiling, queries: UnsafePointer<Float>, count nq: Int,
                                queryNorms: UnsafeBufferPointer<Float>, rowNorms: UnsafePointer<Float>, mask: Bitset?,
                                tile: UnsafeMutablePointer<Float>, heaps: UnsafeMutablePointer<TopKHeap>,
                                pool: CandidatePool, statistics: inout BatchSearchStatistics) {
        let store = store, d = dimension, n = store.count, chunks = tiling.chunks, rowTile = Self.rowTile
        let isL2 = metric == .euclidean
        let block = job / chunks, chunk = job % chunks
        let q0 = block * tiling.queryTile, q1 = min(nq, q0 + tiling.queryTile), m = q1 - q0
        let r0 = chunk * tiling.chunkRows, r1 = min(n, r0 + tiling.chunkRows)
        for i in 0..<m {
            heaps.advanced(by: i).initialize(to: TopKHeap(
                storage: pool.candidates + ((q0 + i) * chunks + chunk) * tiling.kept, capacity: tiling.kept))
        }
        var t = r0
        while t < r1 {
            let w = min(rowTile, r1 - t)
            let g0 = monotonicSeconds()
            BLAS.multiplyTransposed(m: m, n: w, k: d, a: queries + q0 * d, lda: d,
                                    b: store.row(t), ldb: store.stride, c: tile, ldc: rowTile)
            let g1 = monotonicSeconds()
            for i in 0..<m {
                let scores = tile + i * rowTile
                if isL2 {
                    selectL2(scores: scores, count: w, firstRow: t, queryNorm: queryNorms[q0 + i], rowNorms: rowNorms,
                             mask: mask, into: &heaps[i])
                } else {
                    selectInnerProduct(scores: scores, count: w, firstRow: t, mask: mask, into: &heaps[i])
                }
            }
            statistics.gemmSeconds += g1 - g0
            statistics.selectionSeconds += monotonicSeconds() - g1
            statistics.gemmFlops += 2 * Double(m) * Double(w) * Double(d)
            t += w
        }
        for i in 0..<m { pool.counts[(q0 + i) * chunks + chunk] = heaps[i].count }
    }

    /// Stage 2 for one query: its candidates re-scored with the kernels,
    /// best first; nil when a row outside them could still beat the k-th
    /// (a full chunk heap's worst GEMM value, less the GEMM error bound, is
    /// not clear of it), and an exact scan must decide.
    @inline(__always)
    private func rescore(query q: UnsafePointer<Float>, index qi: Int, k: Int, tiling: GEMMTiling, pool: CandidatePool,
                         keys: UnsafeBufferPointer<UInt64>, queryNorm: Float,
                         into exact: inout [Candidate]) -> [Candidate]? {
        let store = store, kernels = kernels, metric = metric
        let d = dimension, chunks = tiling.chunks, kept = tiling.kept
        // Rows that did not make a full chunk heap scored at least that
        // heap's worst GEMM value.
        var bound = Float.infinity
        exact.removeAll(keepingCapacity: true)
        for c in 0..<chunks {
            let base = pool.candidates + (qi * chunks + c) * kept
            let count = pool.counts[qi * chunks + c]
            if count == kept { bound = min(bound, base[0].distance) }
            for e in 0..<count {
                let slot = Int(base[e].id)
                exact.append(Candidate(distance: kernels.rankValue(metric, q, store.row(slot), d), id: keys[slot]))
            }
        }
        exact.sort()
        if bound.isFinite {
            let eps = Self.gemmErrorBound(metric: metric, dimension: d, queryNorm: queryNorm.squareRoot(),
                                          maxRowNorm: store.maxNorm)
            if !(exact[k - 1].distance < bound - eps) { return nil }
        }
        return Array(exact.prefix(k))
    }

    /// Offers rows `firstRow..<firstRow+count` to `heap`, given their inner
    /// products with the query (rank value = −score). Once the heap is full
    /// almost every row is rejected: the SIMD `firstIndex` kernel skips to the
    /// next score that reaches the heap's threshold.
    /// With a `mask` (by slot), rows outside it are passed over.
    @inline(__always)
    private func selectInnerProduct(scores: UnsafeMutablePointer<Float>, count w: Int, firstRow: Int, mask: Bitset?,
                                    into heap: inout TopKHeap) {
        var j = 0
        while true {
            j += kernels.firstIndex(scores + j, count: w - j, atLeast: -heap.threshold)
            if j >= w { break }
            if mask?.contains(firstRow + j) ?? true {
                heap.consider(Candidate(distance: -scores[j], id: UInt64(firstRow + j)))
            }
            j += 1
        }
    }

    /// Offers rows to `heap` given their inner products with the query; the
    /// rank value is ‖q‖² + ‖x‖² − 2 q·x, turned into a score (its negation)
    /// in place so the inner-product selection applies.
    @inline(__always)
    private func selectL2(scores: UnsafeMutablePointer<Float>, count w: Int, firstRow: Int, queryNorm: Float,
                          rowNorms: UnsafePointer<Float>, mask: Bitset?, into heap: inout TopKHeap) {
        for j in 0..<w { scores[j] = 2 * scores[j] - queryNorm - rowNorms[firstRow + j] }
        selectInnerProduct(scores: scores, count: w, firstRow: firstRow, mask: mask, into: &heap)
    }

    /// An upper bound of |GEMM rank value − kernel rank value| for one pair:
    /// both are Float32 sums of `d` products, each off by at most γ(d)·|q||x|
    /// (and, for L2, the two norms' own rounding), with a margin of 2.
    static func gemmErrorBound(metric: Metric, dimension d: Int, queryNorm: Float, maxRowNorm: Float) -> Float {
        let u = Float.ulpOfOne / 2
        let gamma = Float(d + 8) * u * 4
        if metric == .euclidean {
            let s = queryNorm + maxRowNorm
            return gamma * s * s
        }
        return gamma * queryNorm * maxRowNorm
    }
}
