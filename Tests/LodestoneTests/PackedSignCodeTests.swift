import CLodestoneKernels
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// Packed sign codes (a filter's matches in blocks of 32, estimated by table
/// lookups): the kernel against the record kernel, the packed scan against
/// the unpacked one on real embeddings, and the cache that keeps them.
@Suite("Packed sign codes")
struct PackedSignCodeTests {
    /// The real embeddings in an index of this test's own (its filter cache
    /// and writes are not shared).
    static func freshIndex() throws -> HNSWIndex {
        let data = Fixtures.realData
        let index = try HNSWIndex(dimension: data.base.dimension, metric: .cosine)
        try index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 }, threads: 2)
        return index
    }

    @Test("packed estimates equal the record kernel's, AVX2 and portable alike; marks are set exactly under the bound",
          arguments: [1, 64, 100, 384, 769])
    func packedEqualsRecords(dimension d: Int) {
        let words = lodestone_sign_words(d), bytes = lodestone_sign_record_bytes(d)
        let center = Fixtures.randomVectors(count: 1, dimension: d, seed: 5, scale: 0...0.3)
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 11, scale: -1...1)
        for n in [1, 31, 32, 70] {
            let base = Fixtures.randomVectors(count: n, dimension: d, seed: UInt64(d * 100 + n), scale: -1...1)
            let records = UnsafeMutableRawPointer.allocate(byteCount: n * bytes, alignment: 8)
            let blockBytes = lodestone_sign_block_bytes(d)
            let blocks = UnsafeMutableRawPointer.allocate(byteCount: (n + 31) / 32 * blockBytes, alignment: 64)
            let tables = UnsafeMutableRawPointer.allocate(byteCount: 16 * words * 32, alignment: 64)
                .bindMemory(to: UInt8.self, capacity: 16 * words * 32)
            let planes = UnsafeMutablePointer<UInt64>.allocate(capacity: 4 * words)
            defer {
                records.deallocate()
                blocks.deallocate()
                tables.deallocate()
                planes.deallocate()
            }
            for i in 0..<n { lodestone_sign_encode(Array(base[(i * d)..<((i + 1) * d)]), center, d, records + i * bytes) }
            let pointers: [UnsafeRawPointer?] = (0..<n).map { UnsafeRawPointer(records + $0 * bytes) }
            lodestone_sign_pack(pointers, n, d, blocks)
            for euclidean in [false, true] {
                var query = lodestone_sign_query()
                lodestone_sign_prepare(q, center, d, euclidean ? 1 : 0, planes, &query)
                lodestone_sign_tables(planes, words, tables)
                var expected = [Float](repeating: 0, count: n)
                lodestone_sign_estimates(planes, words, &query, pointers, n, &expected)
                let bound = expected.sorted()[n / 2]
                var fast = [Float](repeating: 0, count: n), portable = [Float](repeating: 0, count: n)
                var fastBelow = [UInt32](repeating: 0, count: (n + 31) / 32)
                var portableBelow = fastBelow
                lodestone_sign_block_estimates(tables, words, &query, blocks, n, bound, &fast, &fastBelow)
                lodestone_sign_block_estimates_portable(tables, words, &query, blocks, n, bound, &portable, &portableBelow)
                #expect(fast == expected && portable == expected, "d=\(d) n=\(n) euclidean=\(euclidean)")
                let marked = (0..<n).map { fastBelow[$0 / 32] >> UInt32($0 % 32) & 1 == 1 }
                #expect(marked == expected.map { $0 <= bound } && fastBelow == portableBelow)
            }
        }
    }

    @Test("a filter's second query scans its packed codes, with the unpacked scan's results; a write drops them")
    func packedScanMatchesUnpacked() throws {
        let data = Fixtures.realData
        let n = data.base.rows, d = data.base.dimension
        let index = try Self.freshIndex()
        let keys = (0..<n).filter { ($0 &* 2_654_435_761) % 1000 < 200 }
        let allowed = Bitset(capacity: n, slots: keys)
        #expect(index.allowedNodes(for: allowed) == nil)  // a one-off filter is not translated
        let first = try #require(index.cachedFilter(for: allowed))
        let (nodes, version) = (first.nodes, first.version)
        #expect(first.packed == nil)
        let packed = try #require(index.packedCodes(for: allowed, cached: first))
        #expect(packed.nodes.count == keys.count && index.packedCodes(for: allowed, cached: first) === packed)
        #expect(index.cachedFilter(for: allowed)?.packed === packed)
        let rerank = HNSWIndex.rerankPerEf * 64  // the planner's at ef 64
        for qi in 0..<min(30, data.queries.rows) {
            let q = try VectorPreparation.prepared(data.queries.row(qi), dimension: d, metric: .cosine,
                                                   kernels: index.kernels).vector
            let (fast, plain) = q.withUnsafeBufferPointer { p in
                (index.packedScan(p.baseAddress!, k: 10, rerank: rerank, packed: packed, allowedKeys: allowed),
                 index.quantizedScan(p.baseAddress!, k: 10, rerank: rerank, allowedKeys: allowed, cached: nodes))
            }
            #expect(fast.results == plain.results && fast.ranked == keys.count && fast.compared == rerank)
            // Through the planner: a quantized scan, on the packed codes
            // (unless the index is so small that the exact scan is cheaper).
            let (results, statistics) = try index.search(data.queries.row(qi), k: 10, ef: 64, allowedKeys: allowed,
                                                         matchCount: keys.count)
            if index.planCosts(matches: keys.count, k: 10, ef: 64).quantizedScan {
                #expect(statistics.plan == .quantizedScan && results == fast.results)
            } else {
                #expect(statistics.plan == .exactScan)
            }
        }
        // A write changes the key table: the node set and its codes go.
        try index.add(contentsOf: data.base.row(0), keys: [UInt64(n)], threads: 1)
        #expect(index.allowedNodes(for: allowed) == nil)
        #expect(index.writer.withLock { w in w.filterNodes.allSatisfy { $0.packed == nil } })
        // Codes packed from the node set of before the write (a reader that
        // raced the writer) serve that query only: the new version's node set
        // does not take them.
        let fresh = try #require(index.cachedFilter(for: allowed))
        #expect(fresh.version != version)
        #expect(index.packedCodes(for: allowed, cached: first) != nil)
        #expect(index.writer.withLock { w in w.filterNodes.allSatisfy { $0.packed == nil } })
        #expect(index.packedCodes(for: allowed, cached: fresh)?.nodes.count == keys.count)
    }

    @Test("past the kernel's dimension, or the budget, a filter is not packed and the planner costs it unpacked")
    func notPackable() throws {
        let d = PackedSignCodes.maximumDimension + 64, n = 200
        let index = try HNSWIndex(dimension: d, metric: .cosine, parameters: HNSWParameters(m: 4, efConstruction: 16))
        try index.add(contentsOf: Fixtures.randomVectors(count: n, dimension: d, seed: 3, scale: -1...1),
                      keys: (0..<UInt64(n)).map { $0 }, threads: 1)
        let allowed = Bitset(capacity: n, slots: Array(stride(from: 0, to: n, by: 2)))
        _ = index.allowedNodes(for: allowed)
        let cached = try #require(index.cachedFilter(for: allowed))
        #expect(!index.packable(matches: allowed.count))
        #expect(index.packedCodes(for: allowed, cached: cached) == nil)
        let costs = index.planCosts(matches: allowed.count, k: 10, ef: 16)
        #expect(costs.quantized == Double(allowed.count) * HNSWIndex.unpackedQuantizedCostPerMatch
                + Double(HNSWIndex.rerankPerEf * 16) * HNSWIndex.rerankCostPerVector)
        // Filtered queries still answer, through whichever plan.
        let (results, _) = try index.search(Fixtures.randomVectors(count: 1, dimension: d, seed: 9), k: 10, ef: 16,
                                            allowedKeys: allowed, matchCount: allowed.count)
        #expect(results.count == 10 && results.allSatisfy { $0.key % 2 == 0 })
        // At 384-d (68 bytes a match) nine in ten records fit on their own, all do not.
        let small = try Self.freshIndex(), rows = Fixtures.realData.base.rows
        #expect(small.packable(matches: rows * 9 / 10) && !small.packable(matches: rows))
    }

    @Test("the filters' packed codes stay within their budget: a broad filter drops the least recently used")
    func packedBudget() throws {
        let n = Fixtures.realData.base.rows
        let index = try Self.freshIndex()
        let budget = n * HNSWIndex.packedFilterBytesPerVector
        func held() -> Int { index.writer.withLock { w in w.filterNodes.reduce(0) { $0 + ($1.packed?.byteCount ?? 0) } } }
        func pack(_ share: Int, _ salt: Int) throws -> PackedSignCodes? {
            let allowed = Bitset(capacity: n, slots: (0..<n).filter { ($0 &* 2_654_435_761 &+ salt) % 100 < share })
            _ = index.allowedNodes(for: allowed)
            return index.packedCodes(for: allowed, cached: try #require(index.cachedFilter(for: allowed)))
        }
        let small = try #require(try pack(10, 1))
        let other = try #require(try pack(10, 2))
        #expect(held() <= budget && held() == small.byteCount + other.byteCount)
        // Nine in ten records: it fits alone, so the others give theirs up.
        let broad = try #require(try pack(90, 3))
        #expect(held() == broad.byteCount && held() <= budget)
    }
}

/// The sign codes' partition (k-means clusters) and the clustered scan it
/// allows: a filter's quantized scan ranks its nearest clusters' matches.
@Suite("Clustered scan")
struct ClusteredScanTests {
    /// The real embeddings, with jittered copies up to 20,000 vectors (a
    /// partitioned index), in an index of this test's own: small graph
    /// parameters, since the scans do not walk it.
    static func partitionedIndex(metric: Metric = .cosine, threads: Int = 2) throws
        -> (index: HNSWIndex, rows: [Float], count: Int)
    {
        let data = Fixtures.realData
        let d = data.base.dimension, n = 20_000
        var rows = [Float]()
        rows.reserveCapacity(n * d)
        var rng = Fixtures.SeededGenerator(seed: 17)
        for i in 0..<n {
            let source = data.base.row(i % data.base.rows)
            let jitter: Float = i < data.base.rows ? 0 : 0.03
            var norm: Float = 0
            let row = source.map { $0 + jitter * Float.random(in: -1...1, using: &rng) }
            for x in row { norm += x * x }
            rows.append(contentsOf: row.map { $0 / norm.squareRoot() })
        }
        let index = try HNSWIndex(dimension: d, metric: metric, parameters: HNSWParameters(m: 8, efConstruction: 32))
        try index.add(contentsOf: rows, keys: (0..<UInt64(n)).map { $0 }, threads: threads)
        return (index, rows, n)
    }

    @Test("every node sits in its nearest centroid's cluster, a node added later too; the nearest clusters are a sort's",
          arguments: [Metric.cosine, .euclidean])
    func partition(metric: Metric) throws {
        let (index, rows, n) = try Self.partitionedIndex(metric: metric)
        let d = index.dimension
        index.ensureSignCodes()
        let partition = try #require(index.signCodes.partition)
        #expect(partition.count == CodePartition.clusterCount(nodes: n, live: n))
        func nearestHolds(_ id: UInt32) -> Bool {
            var values = [Float](repeating: 0, count: partition.count)
            partition.rank(index.vector(id), into: &values)
            let best = values.min()!
            return values[partition.cluster(id)] <= best + 1e-4
        }
        #expect(stride(from: 0, to: n, by: 97).allSatisfy { nearestHolds(UInt32($0)) })
        try index.add(contentsOf: Array(rows[(5 * d)..<(6 * d)]), keys: [UInt64(n)], threads: 1)
        #expect(nearestHolds(UInt32(n)))
        // The clusters taken for a target: a full sort's first clusters, as
        // few as reach it.
        var rng = Fixtures.SeededGenerator(seed: 23)
        for qi in 0..<20 {
            let q = Array(rows[(qi * 37 * d)..<((qi * 37 + 1) * d)])
            let counts = (0..<partition.count).map { _ in UInt32.random(in: 0...60, using: &rng) }
            let total = counts.reduce(0) { $0 + Int($1) }
            var values = [Float](repeating: 0, count: partition.count)
            partition.rank(q, into: &values)
            let sorted = (0..<partition.count).sorted { (values[$0], $0) < (values[$1], $1) }
            for target in [1, total / 10, total / 2, total, total + 1] {
                var sum = 0
                let expected = sorted.prefix { c in
                    defer { sum += Int(counts[c]) }
                    return sum < target
                }
                let taken = counts.withUnsafeBufferPointer { partition.nearest(q, counts: $0.baseAddress!, target: target) }
                #expect(Set(taken.map(Int.init)) == Set(expected) && taken.count == expected.count)
            }
        }
    }

    @Test("the nearest clusters for a target are a sort's: ties, equal values, tiny and infinite ranges, any target")
    func nearestClustersKernel() {
        var rng = Fixtures.SeededGenerator(seed: 29)
        func reference(_ values: [Float], _ counts: [UInt32], _ target: Int) -> [Int] {
            var sum = 0
            return (0..<values.count).sorted { (values[$0], $0) < (values[$1], $1) }.prefix { c in
                defer { sum += Int(counts[c]) }
                return sum < target
            }
        }
        let pools: [[Float]] = [
            [0, 1, 2, 3],                                  // many ties
            [0.5],                                         // all equal
            [0, 1e-38, 2e-38, 3e-38, .leastNonzeroMagnitude], // a range too small for a float scale
            [-.infinity, 0, 1, .infinity],                 // infinite values
            (0..<64).map { Float($0) / 7 - 3 },            // spread
        ]
        for trial in 0..<2_000 {
            let pool = pools[trial % pools.count]
            let n = Int.random(in: 1...300, using: &rng)
            let values = (0..<n).map { _ in pool.randomElement(using: &rng)! }
            let counts = (0..<n).map { _ in UInt32.random(in: 0...9, using: &rng) }
            let total = counts.reduce(0) { $0 + Int($1) }
            for target in [0, 1, total / 3, total, total + 5] {
                var order = [UInt16](repeating: 0, count: n), scratch = [UInt16](repeating: 0, count: n)
                let written = lodestone_nearest_clusters(values, counts, n, target, &order, &scratch)
                let expected = reference(values, counts, target)
                #expect(Set(order.prefix(written).map(Int.init)) == Set(expected) && written == expected.count,
                        "trial \(trial), n \(n), target \(target)")
            }
        }
    }

    @Test("a clustered scan ranks its nearest clusters' matches, packed or not alike, with the unfiltered walk's recall")
    func clusteredScan() throws {
        // One thread: the same graph every run, for the unfiltered walk's recall.
        let (index, rows, n) = try Self.partitionedIndex(threads: 1)
        let d = index.dimension
        let keys = (0..<n).filter { ($0 &* 2_654_435_761) % 100 < 60 }
        let allowed = Bitset(capacity: n, slots: keys)
        _ = index.allowedNodes(for: allowed)
        let cached = try #require(index.cachedFilter(for: allowed))
        let packed = try #require(index.packedCodes(for: allowed, cached: cached))
        let runs = try #require(packed.runs)
        #expect(packed.matches == keys.count && runs.last == packed.nodes.count)
        #expect(packed.nodes.filter { $0 != HNSWIndex.noNode }.count == keys.count)
        // The planner's and the budget's bound holds the padded pack.
        let clusters = try #require(index.signCodes.partition).count
        #expect(packed.byteCount <= PackedSignCodes.byteCount(matches: keys.count, dimension: d, clusters: clusters))
        #expect(index.expectedClusters == clusters)
        let ef = 32, rerank = HNSWIndex.rerankPerEf * ef
        #expect(index.planCosts(matches: keys.count, k: 10, ef: ef).rerank == rerank)
        let target = HNSWIndex.clusteredScanTarget(matches: keys.count, rerank: rerank)
        let largest = Int(packed.clusterMatches.max()!)
        var found = 0.0, unfiltered = 0.0
        let queries = Fixtures.realData.queries
        for qi in 0..<min(40, queries.rows) {
            let q = try VectorPreparation.prepared(queries.row(qi), dimension: d, metric: .cosine,
                                                   kernels: index.kernels).vector
            let (fast, plain) = q.withUnsafeBufferPointer { p in
                (index.packedScan(p.baseAddress!, k: 10, rerank: rerank, packed: packed, allowedKeys: allowed),
                 index.quantizedScan(p.baseAddress!, k: 10, rerank: rerank, allowedKeys: allowed,
                                     cached: cached.nodes))
            }
            // A filter's first query (no node set yet) ranks the same codes.
            let first = q.withUnsafeBufferPointer { p in
                index.quantizedScan(p.baseAddress!, k: 10, rerank: rerank, allowedKeys: allowed, cached: nil)
            }
            #expect(fast.results == plain.results && fast.ranked == plain.ranked)
            #expect(first.results == fast.results && first.ranked == fast.ranked)
            #expect(fast.ranked >= target && fast.ranked < target + largest && fast.ranked < keys.count)
            #expect(fast.results.allSatisfy { allowed.contains(Int($0.key)) })
            // Recall against Float64 brute force over the matches, beside
            // the unfiltered walk's at the same ef.
            let scores = Fixtures.referenceScores(base: rows, rows: n, dimension: d, query: queries.row(qi),
                                                  metric: .cosine)
            let best = keys.sorted { (scores[$0], $1) > (scores[$1], $0) }.prefix(10)
            found += Double(Set(best).intersection(fast.results.map { Int($0.key) }).count) / 10
            let all = (0..<n).sorted { (scores[$0], $1) > (scores[$1], $0) }.prefix(10)
            let walked = try index.search(queries.row(qi), k: 10, ef: ef)
            unfiltered += Double(Set(all).intersection(walked.map { Int($0.key) }).count) / 10
        }
        let count = Double(min(40, queries.rows))
        #expect(found / count >= 0.9 && found / count >= unfiltered / count - 0.03,
                "clustered scan recall \(found / count), unfiltered walk \(unfiltered / count)")
    }
}
