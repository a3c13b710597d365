import Dispatch
import Synchronization
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Flat index")
struct FlatIndexTests {
    static func build(_ data: Fixtures.Dataset, metric: Metric = .cosine) throws -> FlatIndex {
        var index = try FlatIndex(dimension: data.base.dimension, metric: metric)
        try index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 })
        return index
    }

    @Test("single-query search returns the exact ground truth on real embeddings")
    func exactOnRealData() throws {
        let data = Fixtures.realData
        #expect(data.base.rows == (Fixtures.sharedData != nil ? 10_000 : 2_000))
        let index = try Self.build(data)
        for qi in 0..<data.queries.rows {
            let got = try index.search(data.queries.row(qi), k: 10).map { Int($0.key) }
            let truth = data.truth.row(qi).prefix(10).map(Int.init)
            #expect(got == truth, "query \(qi) on \(data.name)")
        }
    }

    @Test("batch search returns the exact ground truth and equals single-query results", arguments: [1, 2])
    func batchOnRealData(threads: Int) throws {
        let data = Fixtures.realData
        let index = try Self.build(data)
        let (batch, stats) = try index.searchWithStatistics(batch: data.queries.values, k: 10, threads: threads)
        #expect(stats.usedGEMM)
        for qi in 0..<data.queries.rows {
            #expect(batch[qi].map { Int($0.key) } == data.truth.row(qi).prefix(10).map(Int.init), "query \(qi)")
            #expect(batch[qi] == (try index.search(data.queries.row(qi), k: 10)), "query \(qi): batch differs from single")
        }
    }

    @Test("every metric matches a Float64 brute force; batch equals single for any batch size and threads",
          arguments: Metric.allCases)
    func metricsAgainstFloat64(metric: Metric) throws {
        // Varying norms make dot product and euclidean differ from cosine.
        let n = 700, d = 61
        let base = Fixtures.randomVectors(count: n, dimension: d, seed: 11, scale: 0.2...3)
        let queries = Fixtures.randomVectors(count: 40, dimension: d, seed: 12, scale: 0.5...2)
        var index = try FlatIndex(dimension: d, metric: metric)
        try index.add(contentsOf: base, keys: (0..<UInt64(n)).map { $0 * 3 + 1 })
        let k = 15
        var singles: [[Neighbor]] = []
        for qi in 0..<40 {
            let q = Array(queries[(qi * d)..<((qi + 1) * d)])
            let got = try index.search(q, k: k)
            singles.append(got)
            let ref = Fixtures.bruteForce(base: base, dimension: d, query: q, metric: metric, k: k)
            #expect(got.map { Int($0.key - 1) / 3 } == ref.map(\.0), "query \(qi) \(metric)")
            for (g, r) in zip(got, ref) {
                #expect(abs(Double(g.score) - r.1) <= 1e-4 * max(1, abs(r.1)), "score \(g.score) vs \(r.1)")
            }
        }
        for batchSize in [8, 9, 17, 40] {
            for threads in [1, 2, 3] {
                let batch = try index.search(batch: Array(queries[0..<(batchSize * d)]), k: k, threads: threads)
                #expect(batch == Array(singles[0..<batchSize]), "batch \(batchSize), \(threads) threads, \(metric)")
            }
        }
    }

    @Test("a batch that needs row chunks (few queries, many threads) is still exact")
    func chunkedBatch() throws {
        let n = 5000, d = 32
        let base = Fixtures.randomVectors(count: n, dimension: d, seed: 5)
        let queries = Fixtures.randomVectors(count: 9, dimension: d, seed: 6)
        var index = try FlatIndex(dimension: d, metric: .euclidean)
        try index.add(contentsOf: base, keys: (0..<UInt64(n)).map { $0 })
        let (batch, stats) = try index.searchWithStatistics(batch: queries, k: 20, threads: 4)
        #expect(stats.usedGEMM)
        for qi in 0..<9 {
            #expect(batch[qi] == (try index.search(Array(queries[(qi * d)..<((qi + 1) * d)]), k: 20)))
        }
    }

    @Test("the GEMM error bound is never violated: duplicated and near-equal vectors stay exact")
    func nearTies() throws {
        // Many rows at almost the same distance: the candidate margin must
        // either hold the exact top k or fall back to the exact scan.
        let d = 16
        var base = [Float]()
        for i in 0..<2000 {
            var v = [Float](repeating: 0.25, count: d)
            v[i % d] += Float(i / d) * 1e-6
            base += v
        }
        var index = try FlatIndex(dimension: d, metric: .dotProduct)
        try index.add(contentsOf: base, keys: (0..<2000).map { UInt64($0) })
        let queries = [Float](repeating: 1, count: d * 10)
        let batch = try index.search(batch: queries, k: 10, threads: 2)
        let single = try index.search([Float](repeating: 1, count: d), k: 10)
        for r in batch { #expect(r == single) }
    }

    @Test("add, replace, upsert and remove keep keys, vectors and search consistent")
    func mutations() throws {
        let d = 8
        var index = try FlatIndex(dimension: d, metric: .euclidean)
        let vectors = Fixtures.randomVectors(count: 100, dimension: d, seed: 1)
        try index.add(contentsOf: vectors, keys: (0..<100).map { UInt64($0) })
        #expect(index.count == 100)
        let removed = [index.remove(key: 0), index.remove(key: 0), index.remove(key: 50), index.remove(key: 99)]
        #expect(removed == [true, false, true, true])
        #expect(index.count == 97)
        #expect(!index.contains(key: 50))
        // The rows moved by swap-removal are still found under their keys.
        for key in [UInt64(1), 49, 51, 98] {
            let v = Array(vectors[(Int(key) * d)..<((Int(key) + 1) * d)])
            #expect(index.vector(forKey: key) == v)
            #expect(try index.search(v, k: 1).first?.key == key)
        }
        let replacement = [Float](repeating: 9, count: d)
        try index.replace(replacement, key: 7)
        #expect(index.vector(forKey: 7) == replacement)
        #expect(try index.search(replacement, k: 1) == [Neighbor(key: 7, score: 0)])
        try index.upsert(replacement.map { $0 + 1 }, key: 500)
        try index.upsert(replacement.map { $0 - 1 }, key: 500)
        #expect(index.count == 98)
        #expect(index.vector(forKey: 500) == replacement.map { $0 - 1 })
        // Everything left agrees with a brute force over what is left.
        let remaining = index.keys
        var flat = [Float]()
        for key in remaining { flat += index.vector(forKey: key)! }
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 99)
        let ref = Fixtures.bruteForce(base: flat, dimension: d, query: q, metric: .euclidean, k: 98)
        #expect(try index.search(q, k: 98).map(\.key) == ref.map { remaining[$0.0] })
        index.removeAll()
        #expect(index.isEmpty)
    }

    @Test("many threads can search one index at once and get the sequential answers")
    func concurrentReaders() throws {
        let data = Fixtures.sample
        let index = try Self.build(data)
        let expected = try (0..<data.queries.rows).map { try index.search(data.queries.row($0), k: 10) }
        let results = Locked<[Int: [Neighbor]]>([:])  // a pthread lock: ThreadSanitizer cannot see Mutex's futex
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for qi in stride(from: worker, to: data.queries.rows, by: 4) {
                let single = try! index.search(data.queries.row(qi), k: 10)
                results.withLock { $0[qi] = single }
            }
            _ = try! index.search(batch: data.queries.values, k: 10, threads: 2)
        }
        let got = results.withLock { $0 }
        for qi in 0..<data.queries.rows { #expect(got[qi] == expected[qi]) }
    }

    @Test("copies are independent (copy-on-write)")
    func copyOnWrite() throws {
        var a = try FlatIndex(dimension: 4, metric: .dotProduct)
        try a.add([1, 2, 3, 4], key: 1)
        var b = a
        try b.add([4, 3, 2, 1], key: 2)
        try b.replace([0, 0, 0, 1], key: 1)
        #expect(a.count == 1 && b.count == 2)
        #expect(a.vector(forKey: 1) == [1, 2, 3, 4])
    }

    @Test("cosine stores unit vectors and scores are cosine similarities")
    func cosineScores() throws {
        var index = try FlatIndex(dimension: 2, metric: .cosine)
        try index.add([3, 4], key: 1)
        try index.add([-4, 3], key: 2)
        #expect(index.vector(forKey: 1)!.enumerated().allSatisfy { abs($0.element - [0.6, 0.8][$0.offset]) < 1e-6 })
        let r = try index.search([6, 8], k: 2)
        #expect(r.map(\.key) == [1, 2])
        #expect(abs(r[0].score - 1) < 1e-6 && abs(r[1].score) < 1e-6)
        #expect(abs(Metric.cosine.distance(score: r[0].score)) < 1e-6)
    }

    @Test("ties are broken by the smaller key, in single and batch search")
    func ties() throws {
        var index = try FlatIndex(dimension: 3, metric: .euclidean)
        for key: UInt64 in [9, 3, 7, 1, 5] { try index.add([1, 1, 1], key: key) }
        try index.add([5, 5, 5], key: 0)
        #expect(try index.search([1, 1, 1], k: 3).map(\.key) == [1, 3, 5])
        let batch = try index.search(batch: [Float](repeating: 1, count: 3 * 10), k: 3, threads: 2)
        #expect(batch.allSatisfy { $0.map(\.key) == [1, 3, 5] })
    }

    // MARK: Bad input

    @Test("bad vectors are refused with typed errors and nothing stored is lost")
    func badVectors() throws {
        var index = try FlatIndex(dimension: 3, metric: .cosine)
        try index.add([1, 0, 0], key: 1)
        #expect(throws: LodestoneError.dimensionMismatch(expected: 3, actual: 2)) { try index.add([1, 2], key: 2) }
        #expect(throws: LodestoneError.nonFiniteComponent(index: 1, value: .infinity)) {
            try index.add([1, .infinity, 0], key: 2)
        }
        #expect {
            try index.add([.nan, 0, 0], key: 2)
        } throws: { ($0 as? LodestoneError).map { if case .nonFiniteComponent(0, _) = $0 { true } else { false } } ?? false }
        #expect(throws: LodestoneError.zeroVector) { try index.add([0, 0, 0], key: 2) }
        #expect(throws: LodestoneError.duplicateKey(1)) { try index.add([0, 1, 0], key: 1) }
        #expect(throws: LodestoneError.duplicateKey(5)) {
            try index.add(contentsOf: [0, 1, 0, 0, 0, 1], keys: [5, 5])
        }
        // A batch with one bad vector stores none of them.
        #expect(throws: LodestoneError.nonFiniteComponent(index: 2, value: .infinity)) {
            try index.add(contentsOf: [0, 1, 0, 0, 0, .infinity], keys: [6, 7])
        }
        #expect(throws: LodestoneError.keyNotFound(42)) { try index.replace([1, 1, 1], key: 42) }
        #expect(throws: LodestoneError.zeroVector) { try index.replace([0, 0, 0], key: 1) }
        #expect(index.count == 1 && index.keys == [1] && index.vector(forKey: 1) == [1, 0, 0])
        #expect(throws: LodestoneError.invalidArgument(name: "dimension", reason: "must be at least 1, got 0")) {
            _ = try FlatIndex(dimension: 0, metric: .cosine)
        }
        var euclid = try FlatIndex(dimension: 2, metric: .euclidean)
        try euclid.add([0, 0], key: 1)  // a zero vector is fine outside cosine
        #expect(throws: LodestoneError.self) { try euclid.add([Float.greatestFiniteMagnitude, 1], key: 2) }
    }

    @Test("bad searches are refused with typed errors; k above count returns everything")
    func badSearches() throws {
        var index = try FlatIndex(dimension: 2, metric: .euclidean)
        #expect(throws: LodestoneError.emptyIndex) { try index.search([1, 2], k: 1) }
        #expect(throws: LodestoneError.emptyIndex) { try index.search(batch: [1, 2], k: 1) }
        try index.add([0, 0], key: 1)
        try index.add([1, 1], key: 2)
        #expect(throws: LodestoneError.invalidArgument(name: "k", reason: "must be at least 1, got 0")) {
            try index.search([1, 2], k: 0)
        }
        #expect(throws: LodestoneError.invalidArgument(name: "k", reason: "must be at least 1, got -3")) {
            try index.search(batch: [1, 2], k: -3)
        }
        #expect(throws: LodestoneError.dimensionMismatch(expected: 2, actual: 3)) { try index.search([1, 2, 3], k: 1) }
        #expect(throws: LodestoneError.dimensionMismatch(expected: 2, actual: 1)) { try index.search(batch: [1, 2, 3], k: 1) }
        #expect(throws: LodestoneError.nonFiniteComponent(index: 0, value: -.infinity)) {
            try index.search([-.infinity, 1], k: 1)
        }
        #expect(throws: LodestoneError.invalidArgument(name: "threads", reason: "must be at least 1, got 0")) {
            try index.search(batch: [1, 2], k: 1, threads: 0)
        }
        #expect(try index.search([1, 1], k: 10).map(\.key) == [2, 1])
        #expect(try index.search(batch: [1, 1, 0, 0], k: 10).map { $0.map(\.key) } == [[2, 1], [1, 2]])
        var cosine = try FlatIndex(dimension: 2, metric: .cosine)
        try cosine.add([1, 0], key: 1)
        #expect(throws: LodestoneError.zeroVector) { try cosine.search([0, 0], k: 1) }
    }

    @Test("errors carry messages a user can act on")
    func messages() {
        #expect(LodestoneError.dimensionMismatch(expected: 384, actual: 768).description.contains("384"))
        #expect(LodestoneError.zeroVector.description.contains("cosine"))
        #expect(LodestoneError.emptyIndex.description.contains("add vectors"))
        #expect(LodestoneError.malformedFile(path: "/x.fvecs", reason: "truncated").description == "/x.fvecs: truncated")
    }
}
