import Dispatch
import Synchronization
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("HNSW index")
struct HNSWIndexTests {
    static func recall(_ index: HNSWIndex, _ data: Fixtures.Dataset, k: Int = 10, ef: Int) throws -> Double {
        var hits = 0
        for qi in 0..<data.queries.rows {
            let truth = Set(data.truth.row(qi).prefix(k).map { UInt64($0) })
            hits += try index.search(data.queries.row(qi), k: k, ef: ef).filter { truth.contains($0.key) }.count
        }
        return Double(hits) / Double(data.queries.rows * k)
    }

    static let realIndex: HNSWIndex = {
        let data = Fixtures.realData
        let index = try! HNSWIndex(dimension: data.base.dimension, metric: .cosine)
        try! index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 }, threads: 2)
        return index
    }()

    /// The real embeddings indexed with the compact traversal (4-bit codes).
    static let realCompactIndex: HNSWIndex = {
        let data = Fixtures.realData
        let index = try! HNSWIndex(dimension: data.base.dimension, metric: .cosine,
                                   parameters: HNSWParameters(traversal: .compact))
        try! index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 }, threads: 2)
        return index
    }()

    static func realIndex(_ traversal: HNSWParameters.Traversal) -> HNSWIndex {
        traversal == .compact ? realCompactIndex : realIndex
    }

    @Test("recall@10 ≥ 0.95 at ef=64 on real embeddings")
    func recallOnRealData() throws {
        let r = try Self.recall(Self.realIndex, Fixtures.realData, ef: 64)
        #expect(r >= 0.95, "recall@10 = \(r) on \(Fixtures.realData.name)")
    }
}

extension HNSWIndexTests {
    /// The exact top-k of `query` among `index`'s live vectors.
    static func exact(_ flat: FlatIndex, _ q: [Float], k: Int) throws -> Set<UInt64> {
        Set(try flat.search(q, k: k).map(\.key))
    }

    @Test("batch search equals one-at-a-time search")
    func batchEqualsSingle() throws {
        let data = Fixtures.realData
        let queries = data.queries.prefix(50)
        let batch = try Self.realIndex.search(batch: queries.values, k: 10, ef: 48, threads: 2)
        for i in 0..<50 { #expect(batch[i] == (try Self.realIndex.search(queries.row(i), k: 10, ef: 48))) }
    }

    @Test("a single-threaded build with a fixed seed is deterministic")
    func deterministic() throws {
        let data = Fixtures.sample
        func build() throws -> HNSWIndex {
            let index = try HNSWIndex(dimension: 384, metric: .cosine,
                                      parameters: HNSWParameters(m: 8, efConstruction: 40, seed: 7))
            try index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 * 10 })
            return index
        }
        let a = try build(), b = try build()
        for qi in 0..<data.queries.rows {
            #expect(try a.search(data.queries.row(qi), k: 10, ef: 10) == b.search(data.queries.row(qi), k: 10, ef: 10))
        }
    }

    @Test("every metric reaches high recall against the exact flat index", arguments: Metric.allCases)
    func metrics(metric: Metric) throws {
        let n = 3000, d = 24
        let base = Fixtures.randomVectors(count: n, dimension: d, seed: 21, scale: 0.5...2)
        let queries = Fixtures.randomVectors(count: 50, dimension: d, seed: 22)
        let index = try HNSWIndex(dimension: d, metric: metric, parameters: HNSWParameters(m: 12, efConstruction: 100))
        try index.add(contentsOf: base, keys: (0..<UInt64(n)).map { $0 }, threads: 2)
        var flat = try FlatIndex(dimension: d, metric: metric)
        try flat.add(contentsOf: base, keys: (0..<UInt64(n)).map { $0 })
        var hits = 0
        for qi in 0..<50 {
            let q = Array(queries[(qi * d)..<((qi + 1) * d)])
            let truth = try Self.exact(flat, q, k: 10)
            let got = try index.search(q, k: 10, ef: 100)
            hits += got.filter { truth.contains($0.key) }.count
            // Scores are the metric's, best first.
            let scores = got.map(\.score)
            #expect(scores == (metric.higherIsBetter ? scores.sorted(by: >) : scores.sorted()))
        }
        #expect(Double(hits) / 500 >= 0.95, "\(metric): recall \(Double(hits) / 500)")
    }

    @Test("after removing 10% and replacing 10%, recall stays within 0.01 of a fresh build; removed keys never return")
    func removeAndReplace() throws {
        let data = Fixtures.realData
        let n = data.base.rows, d = data.base.dimension
        let params = HNSWParameters(m: 16, efConstruction: 64)
        let index = try HNSWIndex(dimension: d, metric: .cosine, parameters: params)
        try index.add(contentsOf: data.base.values, keys: (0..<UInt64(n)).map { $0 }, threads: 2)
        var rng = Fixtures.SeededGenerator(seed: 5)
        let order = (0..<n).shuffled(using: &rng)
        let removed = Set(order[0..<(n / 10)].map { UInt64($0) })
        let replaced = Array(order[(n / 10)..<(n / 5)])
        for key in removed { #expect(index.remove(key: key)) }
        // Removing a key that is already gone reports false and changes nothing.
        let countAfterRemoval = index.count
        #expect(!index.remove(key: UInt64(order[0])))
        #expect(index.count == countAfterRemoval)
        // Replace each vector by another real vector: removed row r's vector.
        let donors = Array(order[0..<(n / 10)])
        var final: [UInt64: [Float]] = [:]
        for i in 0..<n where !removed.contains(UInt64(i)) { final[UInt64(i)] = data.base.row(i) }
        for (key, donor) in zip(replaced, donors) {
            let v = data.base.row(donor)
            try index.replace(v, key: UInt64(key))
            final[UInt64(key)] = v
            #expect(try index.search(v, k: 1, ef: 32).first?.key == UInt64(key), "replaced vector not found at its new place")
        }
        #expect(index.count == n - n / 10)
        for key in removed { #expect(!index.contains(key: key)) }

        let keys = final.keys.sorted()
        var flat = try FlatIndex(dimension: d, metric: .cosine)
        try flat.add(contentsOf: keys.flatMap { final[$0]! }, keys: keys)
        let fresh = try HNSWIndex(dimension: d, metric: .cosine, parameters: params)
        try fresh.add(contentsOf: keys.flatMap { final[$0]! }, keys: keys, threads: 2)
        var hitsChurned = 0, hitsFresh = 0
        for qi in 0..<data.queries.rows {
            let q = data.queries.row(qi)
            let truth = try Self.exact(flat, q, k: 10)
            let got = try index.search(q, k: 10, ef: 32)
            #expect(got.allSatisfy { !removed.contains($0.key) })
            hitsChurned += got.filter { truth.contains($0.key) }.count
            hitsFresh += try fresh.search(q, k: 10, ef: 32).filter { truth.contains($0.key) }.count
        }
        let total = Double(data.queries.rows * 10)
        #expect(Double(hitsChurned) / total >= Double(hitsFresh) / total - 0.01,
                "churned recall \(Double(hitsChurned) / total) vs fresh \(Double(hitsFresh) / total)")
    }

    @Test("memory does not grow under delete/insert churn at constant size")
    func churn() throws {
        let n = 2000, d = 16
        let index = try HNSWIndex(dimension: d, metric: .euclidean, parameters: HNSWParameters(m: 8, efConstruction: 32))
        try index.add(contentsOf: Fixtures.randomVectors(count: n, dimension: d, seed: 1),
                      keys: (0..<UInt64(n)).map { $0 })
        var next = UInt64(n)
        var oldest = UInt64(0)
        var peak = 0
        for round in 0..<40 {
            for _ in 0..<100 {
                index.remove(key: oldest)
                oldest += 1
            }
            let fresh = Fixtures.randomVectors(count: 100, dimension: d, seed: 100 + UInt64(round))
            try index.add(contentsOf: fresh, keys: (next..<(next + 100)).map { $0 })
            next += 100
            if round == 5 { peak = index.memoryBytes }
            #expect(index.count == n)
        }
        #expect(index.memoryBytes <= peak, "memory grew from \(peak) to \(index.memoryBytes)")
        #expect(index.nodeCount.load(ordering: .relaxed) <= n + 2 * max(64, n / 100) + 100)
        // Everything still searchable and nothing removed comes back.
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 999)
        let r = try index.search(q, k: 50, ef: 100)
        #expect(r.count == 50 && r.allSatisfy { $0.key >= oldest })
    }

    @Test("a filter applies during traversal: only matching keys, high recall")
    func filterHook() throws {
        let data = Fixtures.realData
        var flat = try FlatIndex(dimension: data.base.dimension, metric: .cosine)
        let allowed = (0..<UInt64(data.base.rows)).filter { $0 % 5 == 0 }
        try flat.add(contentsOf: allowed.flatMap { data.base.row(Int($0)) }, keys: allowed)
        var hits = 0
        for qi in 0..<data.queries.rows {
            let q = data.queries.row(qi)
            let got = try Self.realIndex.search(q, k: 10, ef: 64) { $0 % 5 == 0 }
            #expect(got.count == 10 && got.allSatisfy { $0.key % 5 == 0 })
            let truth = try Self.exact(flat, q, k: 10)
            hits += got.filter { truth.contains($0.key) }.count
        }
        #expect(Double(hits) / Double(data.queries.rows * 10) >= 0.9)
    }

    @Test("queries alternating among several filters keep each filter's node set (no translation per query)")
    func filterNodeSetsKept() throws {
        let index = try HNSWIndex(dimension: 8, metric: .euclidean)
        try index.add(contentsOf: Fixtures.randomVectors(count: 500, dimension: 8, seed: 5), keys: (0..<500).map { $0 })
        let filters = (2...(HNSWIndex.filterNodesCapacity + 1)).map { m in
            var keys = Bitset(capacity: 500)
            for key in stride(from: 0, to: 500, by: m) { keys.insert(key) }
            return keys
        }
        // The first query of each filter only notes it; its second builds the node set.
        for keys in filters { #expect(index.allowedNodes(for: keys) == nil) }
        for round in 0..<3 {
            for keys in filters {
                let nodes = try #require(index.allowedNodes(for: keys), "round \(round)")
                #expect(nodes.count == keys.count)
            }
        }
        // A change to the key table drops them: the next query notes the filter again.
        #expect(index.remove(key: 0))
        #expect(index.allowedNodes(for: filters[0]) == nil)
    }

    @Test("bad input gets typed errors and leaves the index unchanged")
    func badInput() throws {
        let index = try HNSWIndex(dimension: 3, metric: .cosine)
        #expect(throws: LodestoneError.emptyIndex) { try index.search([1, 0, 0], k: 1) }
        try index.add([1, 0, 0], key: 1)
        #expect(throws: LodestoneError.duplicateKey(1)) { try index.add([0, 1, 0], key: 1) }
        #expect(throws: LodestoneError.duplicateKey(2)) { try index.add(contentsOf: [0, 1, 0, 0, 0, 1], keys: [2, 2]) }
        #expect(throws: LodestoneError.dimensionMismatch(expected: 3, actual: 2)) { try index.add([1, 2], key: 3) }
        #expect(throws: LodestoneError.zeroVector) { try index.add([0, 0, 0], key: 3) }
        #expect(throws: LodestoneError.nonFiniteComponent(index: 2, value: .infinity)) { try index.add([0, 1, .infinity], key: 3) }
        #expect(throws: LodestoneError.keyNotFound(9)) { try index.replace([1, 1, 1], key: 9) }
        #expect(throws: LodestoneError.zeroVector) { try index.replace([0, 0, 0], key: 1) }
        #expect(throws: LodestoneError.invalidArgument(name: "k", reason: "must be at least 1, got 0")) {
            try index.search([1, 0, 0], k: 0)
        }
        #expect(throws: LodestoneError.invalidArgument(name: "ef", reason: "must be at least 1, got 0")) {
            try index.search([1, 0, 0], k: 1, ef: 0)
        }
        #expect(throws: LodestoneError.invalidArgument(name: "m", reason: "must be in 2...128, got 1")) {
            _ = try HNSWIndex(dimension: 3, metric: .cosine, parameters: HNSWParameters(m: 1))
        }
        #expect(index.count == 1 && index.vector(forKey: 1) == [1, 0, 0])
        #expect(try index.search([1, 1, 0], k: 5).map(\.key) == [1])  // k above count: all there is
        index.remove(key: 1)
        #expect(throws: LodestoneError.emptyIndex) { try index.search([1, 0, 0], k: 1) }
        try index.upsert([0, 0, 1], key: 4)
        #expect(try index.search([0, 0, 1], k: 1).map(\.key) == [4])
    }

    @Test("threads can search, filtered or not, while another thread adds, replaces and removes (every traversal; a quantized index's blocks mirror its links after, a compact index's codes match its vectors)",
          arguments: [HNSWParameters.Traversal.exact, .quantized, .compact])
    func concurrentReadersAndWriter(traversal: HNSWParameters.Traversal) throws {
        let n = 2200, d = 32  // 12 rounds of writes per traversal: three traversals within the TSan budget
        let base = Fixtures.randomVectors(count: n, dimension: d, seed: 8)
        let index = try HNSWIndex(dimension: d, metric: .dotProduct,
                                  parameters: HNSWParameters(m: 8, efConstruction: 40, traversal: traversal))
        try index.add(contentsOf: Array(base[0..<(1000 * d)]), keys: (0..<1000).map { UInt64($0) })
        let queries = Fixtures.randomVectors(count: 64, dimension: d, seed: 9)
        let thirds = Bitset(capacity: n, slots: Array(stride(from: 0, to: n, by: 3)))
        let done = Atomic<Bool>(false)
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 3) { worker in
            if worker == 0 {
                for start in stride(from: 1000, to: n, by: 100) {
                    try! index.add(contentsOf: Array(base[(start * d)..<((start + 100) * d)]),
                                   keys: (start..<(start + 100)).map { UInt64($0) }, threads: 2)
                    for key in stride(from: start - 1000, to: start - 950, by: 1) { index.remove(key: UInt64(key)) }
                    try! index.replace(Array(base[0..<d]), key: UInt64(start + 1))
                }
                done.store(true, ordering: .releasing)
            } else {
                var i = 0
                while !done.load(ordering: .acquiring) {
                    let q = Array(queries[((i % 64) * d)..<((i % 64 + 1) * d)])
                    if worker == 1 {
                        let r = try! index.search(q, k: 10, ef: 32)
                        if r.count != 10 || Set(r.map(\.key)).count != 10 { failures.add(1, ordering: .relaxed) }
                    } else {
                        // Filtered: node sets and packed codes are made,
                        // dropped at each write and made again meanwhile.
                        let r = try! index.search(q, k: 10, ef: 32, allowedKeys: thirds, matchCount: nil).results
                        if r.count != 10 || Set(r.map(\.key)).count != 10 || !r.allSatisfy({ $0.key % 3 == 0 }) {
                            failures.add(1, ordering: .relaxed)
                        }
                    }
                    i += 1
                }
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(index.count == n - (n - 1000) / 100 * 50)
        if traversal == .quantized { try QuantizedTraversalTests.checkBlocksMirrorLinks(index) }
        if let codes = index.compactCodes { #expect(index.firstCodeNotMatchingVector(codes) == nil) }
    }
}

extension HNSWIndexTests {
    @Test("filtered search plans: the cheapest of the exact scan, the quantized scan and the walk (filter applied to results when most match); min(k, matches) results",
          arguments: [(50, SearchPlan.exactScan), (2, SearchPlan.postFilteredGraph), (3000, SearchPlan.exactScan)])
    func plannedFilter(modulus: Int, expectedPlan: SearchPlan) throws {
        let data = Fixtures.realData
        let index = Self.realIndex
        var allowed = Bitset(capacity: data.base.rows)
        for key in stride(from: 0, to: data.base.rows, by: modulus) { allowed.insert(key) }
        var flat = try FlatIndex(dimension: data.base.dimension, metric: .cosine)
        let keys = allowed.slots.map { UInt64($0) }
        try flat.add(contentsOf: keys.flatMap { data.base.row(Int($0)) }, keys: keys)
        var hits = 0, wanted = 0
        for qi in 0..<data.queries.rows {
            let q = data.queries.row(qi)
            let (results, statistics) = try index.search(q, k: 10, ef: 64, allowedKeys: allowed, matchCount: allowed.count)
            // The cost model decides: on a small index even half of it is
            // cheaper to scan than to walk.
            let costs = index.planCosts(matches: allowed.count, k: 10, ef: 64)
            #expect(statistics.plan == (costs.exact ? .exactScan : costs.quantizedScan ? .quantizedScan : expectedPlan))
            #expect(statistics.matches == allowed.count)
            if statistics.plan == .exactScan { #expect(statistics.distancesComputed == allowed.count) }

            #expect(results.count == min(10, allowed.count))
            #expect(results.allSatisfy { allowed.contains(Int($0.key)) })
            let truth = Set(try flat.search(q, k: 10).map(\.key))
            hits += results.filter { truth.contains($0.key) }.count
            wanted += truth.count
        }
        let recall = Double(hits) / Double(wanted)
        #expect(recall >= (index.planCosts(matches: allowed.count, k: 10, ef: 64).exact ? 1.0 : 0.95),
                "recall \(recall) with 1 in \(modulus) allowed")
    }
}

extension HNSWIndexTests {
    @Test("a broad filter walks the beam it is costed at: ef / sqrt(share), post-filtered once sqrt(share) x ef >= 2k")
    func postFilteredBeamIsWidened() throws {
        let data = Fixtures.realData
        let index = Self.realIndex
        let n = data.base.rows
        // The rule itself, at a half and at four fifths of the records.
        let half = index.planCosts(matches: n / 2, k: 10, ef: 32)
        #expect(half.plainWalk && half.plainWalkEf == Int((32 / 0.5.squareRoot()).rounded(.up)))
        #expect(!index.planCosts(matches: n / 2, k: 10, ef: 24).plainWalk)  // sqrt(0.5) x 24 < 20
        // Four fifths pass at ef 24: on the 10,000-vector slice the post-filtered walk is the cheapest plan.
        var allowed = Bitset(capacity: n)
        for key in 0..<n where key % 5 != 0 { allowed.insert(key) }
        let costs = index.planCosts(matches: allowed.count, k: 10, ef: 24)
        #expect(costs.plainWalk && costs.plainWalkEf == 27)
        var agreeing = 0
        for qi in 0..<min(50, data.queries.rows) {
            let (results, statistics) = try index.search(data.queries.row(qi), k: 10, ef: 24, allowedKeys: allowed,
                                                         matchCount: allowed.count)
            #expect(results.count == 10 && results.allSatisfy { allowed.contains(Int($0.key)) })
            if !costs.exact && !costs.quantizedScan {
                #expect(statistics.plan == .postFilteredGraph && statistics.ef == 27, "\(statistics)")
            }
            // The walk itself, wherever the planner would rather scan.
            let q = try VectorPreparation.prepared(data.queries.row(qi), dimension: data.base.dimension, metric: .cosine,
                                                   kernels: index.kernels).vector
            let walked = q.withUnsafeBufferPointer {
                index.postFilteredWalk($0.baseAddress!, k: 10, ef: costs.plainWalkEf,
                                       admission: FilterAdmission(index: index, keys: allowed, nodes: nil))
            }
            #expect(walked.results.count == 10 && walked.results.allSatisfy { allowed.contains(Int($0.key)) })
            agreeing += Set(walked.results.map(\.key)).intersection(results.map(\.key)).count
        }
        #expect(Double(agreeing) >= 0.85 * 10 * Double(min(50, data.queries.rows)), "the walk and the plan agree on \(agreeing)")
    }
}

extension HNSWIndexTests {
    @Test("batch upsert: present keys replaced, new keys added; a bad row anywhere changes nothing", arguments: [true, false])
    func batchUpsert(graph: Bool) throws {
        let data = Fixtures.sample
        let d = data.base.dimension
        let rows = Array(data.base.values[0..<(20 * d)])
        let hnsw = try HNSWIndex(dimension: d, metric: .cosine)
        var flat = try FlatIndex(dimension: d, metric: .cosine)
        func upsert(_ v: [Float], _ keys: [UInt64]) throws(LodestoneError) {
            if graph { try hnsw.upsert(contentsOf: v, keys: keys, threads: 2) } else { try flat.upsert(contentsOf: v, keys: keys) }
        }
        func vector(_ key: UInt64) -> [Float]? { graph ? hnsw.vector(forKey: key) : flat.vector(forKey: key) }
        func count() -> Int { graph ? hnsw.count : flat.count }
        try upsert(Array(rows[0..<(10 * d)]), (0..<10).map { UInt64($0) })
        // Keys 5..<15: five replaced, five new.
        try upsert(Array(rows[(10 * d)..<(20 * d)]), (5..<15).map { UInt64($0) })
        #expect(count() == 15)
        #expect(vector(5) == data.base.row(10) && vector(14) == data.base.row(19) && vector(4) == data.base.row(4))
        // A zero row in the middle, or a key named twice: nothing changes.
        var bad = Array(rows[0..<(3 * d)])
        for j in d..<(2 * d) { bad[j] = 0 }
        #expect(throws: LodestoneError.zeroVector) { try upsert(bad, [0, 100, 101]) }
        #expect(throws: LodestoneError.duplicateKey(7)) { try upsert(Array(rows[0..<(2 * d)]), [7, 7]) }
        #expect(count() == 15 && vector(0) == data.base.row(0) && vector(100) == nil)
        let top = graph ? try hnsw.search(data.base.row(19), k: 1) : try flat.search(data.base.row(19), k: 1)
        #expect(top.first?.key == 14)
    }
}

extension HNSWIndexTests {
    @Test("cost-based planner: every selectivity returns min(k, matches) passing results at recall ≥ 0.95; explain reports both estimates (exact and compact traversals; a filter's queries after its first scan packed codes)",
          arguments: [0.001, 0.01, 0.05, 0.2, 0.5, 1.0], [HNSWParameters.Traversal.exact, .compact])
    func plannerAcrossSelectivities(share: Double, traversal: HNSWParameters.Traversal) throws {
        let data = Fixtures.realData
        let index = Self.realIndex(traversal)
        let n = data.base.rows
        // A filter that follows the data's meaning at low shares: the rows
        // nearest one base vector (a region of the embedding space), else
        // every m-th row (spread out).
        let anchor = data.base.row(7)
        var flatAll = try FlatIndex(dimension: data.base.dimension, metric: .cosine)
        try flatAll.add(contentsOf: data.base.values, keys: (0..<UInt64(n)).map { $0 })
        let matching = max(1, Int(Double(n) * share))
        let keys: [UInt64] = share <= 0.05
            ? try flatAll.search(anchor, k: matching).map(\.key)
            : (0..<UInt64(n)).filter { Double($0 % 1000) < share * 1000 }
        let allowed = Bitset(capacity: n, slots: keys.map { Int($0) })
        var flat = try FlatIndex(dimension: data.base.dimension, metric: .cosine)
        try flat.add(contentsOf: keys.flatMap { data.base.row(Int($0)) }, keys: keys)
        var hits = 0, wanted = 0
        for qi in 0..<min(50, data.queries.rows) {
            let q = data.queries.row(qi)
            let (results, statistics) = try index.search(q, k: 10, ef: 64, allowedKeys: allowed, matchCount: allowed.count)
            #expect(results.count == min(10, allowed.count))
            #expect(results.allSatisfy { allowed.contains(Int($0.key)) })
            #expect(statistics.estimatedScanCost > 0 && statistics.estimatedGraphCost > 0)
            let truth = Set(try flat.search(q, k: 10).map(\.key))
            hits += results.filter { truth.contains($0.key) }.count
            wanted += truth.count
        }
        let recall = Double(hits) / Double(wanted)
        #expect(recall >= 0.95, "recall \(recall) with \(keys.count) of \(n) allowed, \(traversal)")
    }
}

extension HNSWIndexTests {
    @Test("the two-hop filtered walk: only passing results, high recall at mid selectivity; over budget it gives up (on float32, and on the compact codes)",
          arguments: [0.1, 0.2, 0.5], [HNSWParameters.Traversal.exact, .compact])
    func twoHopWalk(share: Double, traversal: HNSWParameters.Traversal) throws {
        let data = Fixtures.realData
        let index = Self.realIndex(traversal)
        let n = data.base.rows
        let keys = (0..<UInt64(n)).filter { Double(($0 &* 2_654_435_761) % 1000) < share * 1000 }
        let allowed = Bitset(capacity: n, slots: keys.map { Int($0) })
        var flat = try FlatIndex(dimension: data.base.dimension, metric: .cosine)
        try flat.add(contentsOf: keys.flatMap { data.base.row(Int($0)) }, keys: keys)
        var hits = 0, wanted = 0
        for qi in 0..<min(50, data.queries.rows) {
            let q = try VectorPreparation.prepared(data.queries.row(qi), dimension: data.base.dimension, metric: .cosine,
                                                   kernels: index.kernels).vector
            let walked = q.withUnsafeBufferPointer {
                index.walk($0.baseAddress!, k: 10, ef: 128, budget: .max, admission: FilterAdmission(index: index, keys: allowed, nodes: nil))
            }
            let results = try #require(walked).results
            #expect(results.count == 10 && results.allSatisfy { allowed.contains(Int($0.key)) })
            let truth = Set(try flat.search(data.queries.row(qi), k: 10).map(\.key))
            hits += results.filter { truth.contains($0.key) }.count
            wanted += truth.count
            // A budget of a few distances: the walk gives up (the planner then scans).
            let starved = q.withUnsafeBufferPointer {
                index.walk($0.baseAddress!, k: 10, ef: 128, budget: 5, admission: FilterAdmission(index: index, keys: allowed, nodes: nil))
            }
            #expect(starved == nil)
        }
        let recall = Double(hits) / Double(wanted)
        #expect(recall >= 0.93, "two-hop walk recall \(recall) with \(keys.count) of \(n) allowed, \(traversal)")
    }
}
