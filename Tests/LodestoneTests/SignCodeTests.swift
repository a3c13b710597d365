import CLodestoneKernels
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// Sign codes and the quantized scan: the kernel against a Float64 reference
/// of its documented estimator, and the plan against exact search on real
/// embeddings.
@Suite("Sign codes and the quantized scan")
struct SignCodeTests {
    /// The documented estimate, in Float64, from the record's fields and the
    /// query quantized as the header says.
    static func referenceEstimate(query q: [Float], center c: [Float], record: UnsafeRawPointer, euclidean: Bool) -> Double {
        let d = q.count, words = lodestone_sign_words(d)
        let r = (0..<d).map { q[$0] - c[$0] }
        let lo = r.min()!, hi = r.max()!
        let delta = hi > lo ? (hi - lo) / 15 : 0
        var dot = 0.0
        for i in 0..<d {
            let u = delta > 0 ? Float(min(15, max(0, Int((r[i] - lo) / delta + 0.5)))) : 0  // as the kernel rounds
            let quantized = Double(lo) + Double(delta) * Double(u)
            let bit = record.load(fromByteOffset: (i >> 6) * 8, as: UInt64.self) >> UInt64(i & 63) & 1
            dot += quantized * (bit == 1 ? 1 : -1)
        }
        let factor = Double(record.load(fromByteOffset: words * 8, as: Float.self))
        let cdot = Double(record.load(fromByteOffset: words * 8 + 4, as: Float.self))
        let norm2 = Double(record.load(fromByteOffset: words * 8 + 8, as: Float.self))
        let estimate = factor * dot + cdot
        return euclidean ? norm2 - 2 * estimate : -estimate
    }

    @Test("estimates equal the documented estimator (Float64), popcnt and portable alike; records hold what the header says",
          arguments: [1, 63, 64, 100, 384, 769])
    func estimator(dimension d: Int) {
        let n = 37
        let base = Fixtures.randomVectors(count: n, dimension: d, seed: UInt64(d), scale: -1...2)
        let center = Fixtures.randomVectors(count: 1, dimension: d, seed: 99, scale: 0...0.5)
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 7, scale: -1...1)
        let bytes = lodestone_sign_record_bytes(d), words = lodestone_sign_words(d)
        #expect(bytes == words * 8 + 16)
        let records = UnsafeMutableRawPointer.allocate(byteCount: n * bytes, alignment: 8)
        defer { records.deallocate() }
        for i in 0..<n {
            let row = Array(base[(i * d)..<((i + 1) * d)])
            lodestone_sign_encode(row, center, d, records + i * bytes)
            // The fields: bits, |x|^2, set bits.
            let ones = records.load(fromByteOffset: i * bytes + words * 8 + 12, as: UInt32.self)
            #expect(Int(ones) == (0..<d).filter { row[$0] > center[$0] }.count)
            let norm2 = records.load(fromByteOffset: i * bytes + words * 8 + 8, as: Float.self)
            #expect(abs(Double(norm2) - row.reduce(0.0) { $0 + Double($1) * Double($1) }) <= 1e-4 * Double(d))
        }
        let pointers: [UnsafeRawPointer?] = (0..<n).map { UnsafeRawPointer(records + $0 * bytes) }
        for euclidean in [false, true] {
            let planes = UnsafeMutablePointer<UInt64>.allocate(capacity: 4 * words)
            defer { planes.deallocate() }
            var query = lodestone_sign_query()
            lodestone_sign_prepare(q, center, d, euclidean ? 1 : 0, planes, &query)
            var fast = [Float](repeating: 0, count: n), portable = [Float](repeating: 0, count: n)
            lodestone_sign_estimates(planes, words, &query, pointers, n, &fast)
            lodestone_sign_estimates_portable(planes, words, &query, pointers, n, &portable)
            #expect(fast == portable)
            for i in 0..<n {
                let reference = Self.referenceEstimate(query: q, center: center, record: pointers[i]!, euclidean: euclidean)
                #expect(abs(Double(fast[i]) - reference) <= 1e-4 * (1 + abs(reference)) * Double(d).squareRoot(),
                        "d=\(d) row \(i): \(fast[i]) vs \(reference)")
            }
        }
    }

    @Test("the quantized scan finds the filtered top 10 of real embeddings (recall ≥ 0.95 against Float64), with exact scores",
          arguments: [0.1, 0.3])
    func quantizedScanRecall(share: Double) throws {
        let data = Fixtures.realData
        let index = HNSWIndexTests.realIndex
        let n = data.base.rows, d = data.base.dimension
        let keys = (0..<n).filter { Double(($0 &* 2_654_435_761) % 1000) < share * 1000 }
        let allowed = Bitset(capacity: n, slots: keys)
        let matching = keys.flatMap { data.base.row($0) }
        var hits = 0, wanted = 0
        for qi in 0..<min(50, data.queries.rows) {
            let query = data.queries.row(qi)
            let q = try VectorPreparation.prepared(query, dimension: d, metric: .cosine, kernels: index.kernels).vector
            let scanned = q.withUnsafeBufferPointer { index.quantizedScan($0.baseAddress!, k: 10, rerank: 128, allowedKeys: allowed, cached: index.allowedNodes(for: allowed)) }
            #expect(scanned.results.count == 10 && scanned.ranked == keys.count && scanned.compared == 128)
            #expect(scanned.results.allSatisfy { allowed.contains(Int($0.key)) })
            let truth = Fixtures.bruteForce(base: matching, dimension: d, query: query, metric: .cosine, k: 10)
            let exact = Dictionary(uniqueKeysWithValues: Fixtures.bruteForce(base: matching, dimension: d, query: query,
                                                                             metric: .cosine, k: 400).map { (keys[$0.0], $0.1) })
            for r in scanned.results {
                // Scores are exact: the reranking compares full vectors.
                if let s = exact[Int(r.key)] { #expect(abs(Double(r.score) - s) < 1e-4) }
            }
            let truthKeys = Set(truth.map { UInt64(keys[$0.0]) })
            hits += scanned.results.filter { truthKeys.contains($0.key) }.count
            wanted += truthKeys.count
        }
        let recall = Double(hits) / Double(wanted)
        #expect(recall >= 0.95, "quantized scan recall \(recall) with \(keys.count) of \(n) allowed")
    }

    @Test("codes follow inserts, removals and reused slots after they are built; euclidean ranks like Float64")
    func codesFollowWrites() throws {
        let data = Fixtures.realData
        let d = data.base.dimension
        let n = min(3_000, data.base.rows - 500)
        let index = try HNSWIndex(dimension: d, metric: .euclidean)
        try index.add(contentsOf: Array(data.base.values[0..<(n * d)]), keys: (0..<UInt64(n)).map { $0 }, threads: 2)
        let all = Bitset(capacity: n + 500, slots: Array(0..<(n + 500)))
        // The first scan builds the codes.
        let first = data.base.row(5).withUnsafeBufferPointer { index.quantizedScan($0.baseAddress!, k: 5, rerank: 64, allowedKeys: all, cached: index.allowedNodes(for: all)) }
        #expect(index.signCodes.isReady && first.results.first?.key == 5)
        // Added after: each new vector is its own nearest neighbour.
        try index.add(contentsOf: Array(data.base.values[(n * d)..<((n + 500) * d)]), keys: (UInt64(n)..<UInt64(n + 500)).map { $0 },
                      threads: 2)
        // Removed, then the slots reused by new keys holding other vectors.
        for key in UInt64(0)..<100 { _ = index.remove(key: key) }
        index.compact()
        try index.add(contentsOf: Array(data.base.values[(200 * d)..<(300 * d)]).map { $0 + 0.001 },
                      keys: (UInt64(10_000)..<UInt64(10_100)).map { $0 }, threads: 1)
        let keys = Array(100..<(n + 500)) + Array(10_000..<10_100)
        let allowed = Bitset(capacity: 10_100, slots: keys)
        var base: [Float] = []
        for key in keys { base += try #require(index.vector(forKey: UInt64(key))) }
        var hits = 0
        for probe in [n + 3, n + 250, n + 499, 150, 10_050] {
            let query = try #require(index.vector(forKey: UInt64(probe)))
            let scanned = query.withUnsafeBufferPointer {
                index.quantizedScan($0.baseAddress!, k: 10, rerank: 128, allowedKeys: allowed, cached: index.allowedNodes(for: allowed))
            }
            #expect(scanned.results.first?.key == UInt64(probe))
            let truth = Set(Fixtures.bruteForce(base: base, dimension: d, query: query, metric: .euclidean, k: 10)
                .map { UInt64(keys[$0.0]) })
            hits += scanned.results.filter { truth.contains($0.key) }.count
        }
        #expect(hits >= 45, "euclidean quantized scan found \(hits) of 50")
    }
}
