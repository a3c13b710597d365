import CLodestoneKernels
import Foundation
import Testing
@testable import Lodestone

/// The sparse side of a hybrid query: the records reaching a floor, found
/// by reading only the terms such a record must hold, checked against
/// float64 brute force on BM25 vectors of the real PyPI summaries.
@Suite struct SparseFloorTests {
    /// A record's dot product with `query` in float64 (0 when it has none).
    static func dot(_ record: SparseVector?, _ query: SparseVector) -> Double {
        guard let record else { return 0 }
        let weights = Dictionary(uniqueKeysWithValues: zip(query.indices, query.values))
        return zip(record.indices, record.values).reduce(0.0) { $0 + Double($1.1) * Double(weights[$1.0] ?? 0) }
    }

    @Test("the floor search finds the records reaching the floor, scored exactly, and only allowed ones")
    func floorSearch() throws {
        let n = min(Fixtures.realRecords.count, 3_000)
        let path = Fixtures.temporaryDirectory("sparse-floor")
        var db = try Database(path: path)
        var index = try db.createIndex(name: "hybrid", dimension: 384, metric: .dotProduct)
        try index.upsert(SparseTests.records(0..<n))
        try check(index, "built")
        // Opened again: postings and vectors read from the segment.
        try index.close()
        db = try Database(path: path)
        index = try db.index("hybrid")
        try check(index, "reopened")
    }

    /// The floor search on `index` against brute force over its stored
    /// vectors, at several floors, with and without a filter.
    func check(_ index: Lodestone.Index, _ label: String) throws {
        let sparse = index.table.sparse, slots = index.table.capacity
        let stored = (0..<slots).map { sparse.vector(slot: UInt32($0)) }
        let allowed = Bitset(capacity: slots, slots: (0..<slots).filter { $0 % 3 != 0 })
        var found = 0, wanted = 0
        for q in SparseTests.texts.queries.prefix(60) where !q.isEmpty {
            let exact = stored.map { Self.dot($0, q) }
            let ranked = exact.enumerated().filter { $0.element > 0 }.sorted { $0.element > $1.element }
            for (rank, filter) in [(5, nil), (30, nil), (120, nil), (30, allowed)] as [(Int, Bitset?)] {
                let passing = ranked.filter { filter?.contains($0.offset) ?? true }
                guard passing.count > rank else { continue }
                let floor = Float(passing[rank].element)
                let limit = 64
                let result = sparse.search(q, terms: QueryTermTable(q), floor: floor, limit: limit, allowed: filter,
                                           slots: slots)
                #expect(result.count <= limit)
                #expect(zip(result, result.dropFirst()).allSatisfy { $0.score >= $1.score }, "best first")
                for r in result {
                    let slot = Int(r.key)
                    #expect(abs(Double(r.score) - exact[slot]) <= 1e-5 * max(1, exact[slot]), "exact score")
                    #expect(Double(r.score) >= Double(floor) - 1e-5)
                    #expect(filter?.contains(slot) ?? true, "only allowed slots")
                }
                // The best `limit` of those reaching the floor (ties at the
                // floor included).
                let reaching = passing.prefix { Float($0.element) >= floor }.prefix(limit).map(\.offset)
                found += Set(reaching).intersection(result.map { Int($0.key) }).count
                wanted += reaching.count
            }
            // Without a floor it is the exact search.
            let unbounded = sparse.search(q, terms: QueryTermTable(q), floor: -.infinity, limit: 10, allowed: nil,
                                          slots: slots)
            #expect(unbounded == sparse.search(q, k: 10, allowed: nil, slots: slots))
        }
        #expect(wanted > 0 && Double(found) / Double(wanted) >= 0.95, "\(label): found \(found) of \(wanted)")
    }

    @Test("a store with a value below zero searches exactly")
    func negativeValuesSearchExactly() throws {
        let db = try Database(path: Fixtures.temporaryDirectory("sparse-floor-negative"))
        let index = try db.createSparseIndex(name: "signed")
        try index.upsert([
            Record(id: "a", values: [], sparseValues: SparseVector(indices: [1, 2], values: [1, -2])),
            Record(id: "b", values: [], sparseValues: SparseVector(indices: [1, 3], values: [0.5, 4])),
            Record(id: "c", values: [], sparseValues: SparseVector(indices: [2, 3], values: [3, 1])),
        ])
        let sparse = index.table.sparse, slots = index.table.capacity
        #expect(sparse.mayHoldNegative)
        let q = SparseVector(indices: [1, 2, 3], values: [1, 1, 1])
        let result = sparse.search(q, terms: QueryTermTable(q), floor: 0.5, limit: 5, allowed: nil, slots: slots)
        #expect(result == sparse.search(q, k: 5, allowed: nil, slots: slots, floor: 0.5))
        #expect(result.map(\.score) == [4.5, 4])
    }

    @Test("a query term table's dot products equal a merge's, whatever the terms")
    func queryTermTable() {
        var rng = Fixtures.SeededGenerator(seed: 7)
        for trial in 0..<300 {
            let terms = [1, 2, 9, 40, 300, 2_048][trial % 6]
            // Small term ranges force collisions; term 0 and zero weights
            // look like an empty bucket.
            let range: UInt32 = trial % 2 == 0 ? 4 * UInt32(terms) : .max
            var chosen = Set<UInt32>()
            while chosen.count < terms { chosen.insert(UInt32.random(in: 0...range, using: &rng)) }
            if trial % 3 == 0 { chosen.insert(0) }
            let indices = chosen.sorted()
            let query = SparseVector(indices: indices,
                                     values: indices.map { _ in Bool.random(using: &rng) ? 0 : Float.random(in: -2...2, using: &rng) })
            let table = QueryTermTable(query)
            for _ in 0..<10 {
                var components = Set(indices.filter { _ in Bool.random(using: &rng) })
                for _ in 0..<5 { components.insert(UInt32.random(in: 0...range, using: &rng)) }
                let keys = components.sorted()
                let entries = keys.map { SparseEntry(key: $0, value: Float.random(in: 0...3, using: &rng)) }
                let record = SparseVector(indices: keys, values: entries.map(\.value))
                let got = table.withDot { dot in entries.withUnsafeBufferPointer { dot($0) } }
                let want = Self.dot(record, query)
                #expect(abs(Double(got) - want) <= 1e-4 * max(1, abs(want)), "trial \(trial): \(got) vs \(want)")
            }
        }
    }

    @Test("a query of many terms spread over 32 bits gets a table of at most 8 buckets a term")
    func queryTermTableSize() {
        var rng = Fixtures.SeededGenerator(seed: 3)
        for terms in [10, 100, 2_048] {
            var chosen = Set<UInt32>()
            while chosen.count < terms { chosen.insert(UInt32.random(in: 0...UInt32.max, using: &rng)) }
            let indices = chosen.sorted()
            let query = SparseVector(indices: indices, values: indices.map { _ in Float.random(in: 0.1...1, using: &rng) })
            let table = QueryTermTable(query)
            #expect(table.bucketCount <= 16 * terms, "\(terms) terms: \(table.bucketCount) buckets")
            // Every term is found, each with its own weight.
            for (t, w) in zip(indices, query.values).prefix(200) {
                let got = table.withDot { dot in [SparseEntry(key: t, value: 1)].withUnsafeBufferPointer { dot($0) } }
                #expect(got == w)
            }
        }
    }

    @Test("the kernel's choice of the best scores holds the best `want` of those at the bar")
    func bestScores() {
        var rng = Fixtures.SeededGenerator(seed: 11)
        let pools: [[Float]] = [
            [0, 1, 2, 3],                                   // many ties
            [0.5],                                          // all equal
            [0, 1e-38, 2e-38, 3e-38, .leastNonzeroMagnitude], // a range too small for a float scale
            (0..<500).map { Float($0) / 97 - 1 },           // spread
        ]
        for trial in 0..<2_000 {
            let pool = pools[trial % pools.count]
            let n = Int.random(in: 0...600, using: &rng)
            let scores = (0..<n).map { _ in pool.randomElement(using: &rng)! }
            let bar = pool.randomElement(using: &rng)!
            let want = Int.random(in: 1...200, using: &rng)
            var chosen = [UInt32](repeating: 0, count: max(n, 1))
            let m = lodestone_best_scores(scores, n, bar, want, &chosen)
            let picked = chosen.prefix(m).map(Int.init)
            let passing = scores.filter { $0 >= bar }
            #expect(zip(picked, picked.dropFirst()).allSatisfy { $0 < $1 }, "ascending positions")
            #expect(picked.allSatisfy { scores[$0] >= bar })
            #expect(m == min(want, passing.count), "trial \(trial): \(m) of \(passing.count), want \(want)")
            // What was left out beats nothing kept by more than a bin of
            // the histogram (64 from the bar to the highest score; one when
            // the range is too small for a float scale).
            let left = Set(0..<n).subtracting(picked).filter { scores[$0] >= bar }.map { scores[$0] }
            if let least = picked.map({ scores[$0] }).min(), let most = left.max() {
                let range = (passing.max() ?? bar) - bar
                let bin = range < 1e-29 ? range : range / 64
                #expect(most <= least + bin * 1.001, "trial \(trial): left \(most), kept \(least)")
            }
        }
        // A NaN score is never chosen, and does not upset the others.
        let withNaN: [Float] = [1, .nan, 2, 3, 0.5, 2, 2, 2]
        var chosen = [UInt32](repeating: 0, count: withNaN.count)
        let m = lodestone_best_scores(withNaN, withNaN.count, 0, 3, &chosen)
        #expect(Array(chosen.prefix(m)) == [2, 3, 5])
    }
}
