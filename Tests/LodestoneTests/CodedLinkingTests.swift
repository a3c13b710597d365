import CLodestoneKernels
import Foundation
import Testing

@testable import Lodestone

@Suite("Coded linking: a compact index links its nodes on its 4-bit codes")
struct CodedLinkingTests {
    @Test("code-to-code estimates are the ranks of the vectors the codes stand for (Float64, exact norms), AVX2 and portable alike, at any dimension",
          arguments: [1, 5, 64, 100, 384, 1_536])
    func pairEstimates(dimension d: Int) throws {
        let n = 40
        let rows = Fixtures.randomVectors(count: n, dimension: d, seed: UInt64(d), scale: -1...1)
        let center = Fixtures.randomVectors(count: 1, dimension: d, seed: 99, scale: -0.2...0.2)
        let stride = lodestone_cc_record_bytes(d)
        let records = UnsafeMutableRawPointer.allocate(byteCount: n * stride, alignment: 64)
        defer { records.deallocate() }
        var pointers: [UnsafeRawPointer?] = []
        var factors: [Float] = []
        var decodedRows: [[Double]] = []
        for r in 0..<n {
            let record = records + r * stride
            rows.withUnsafeBufferPointer { lodestone_cc_encode($0.baseAddress! + r * d, center, d, record) }
            pointers.append(UnsafeRawPointer(record))
            var f: [Float] = [0, 0]
            lodestone_cc_pair_factors(record, center, d, &f)
            factors += f
            let x = CompactTraversalTests.decoded(record: record, center: center)
            decodedRows.append(x)
            // A = <c, r'>, R = sum(r'), r' = x' - c.
            let a = zip(center, x).reduce(0.0) { $0 + Double($1.0) * ($1.1 - Double($1.0)) }
            let rsum = zip(center, x).reduce(0.0) { $0 + ($1.1 - Double($1.0)) }
            #expect(abs(Double(f[0]) - a) <= 1e-4 * max(1, abs(a)) && abs(Double(f[1]) - rsum) <= 1e-4 * max(1, abs(rsum)))
        }
        let centerNorm2 = Float(center.reduce(0.0) { $0 + Double($1) * Double($1) })
        for euclidean in [false, true] {
            var fast = [Float](repeating: 0, count: n), portable = [Float](repeating: 0, count: n)
            for a in [0, 7, n - 1] {
                let own = Array(factors[2 * a..<2 * a + 2])
                lodestone_cc_pair_estimates(pointers[a], own, centerNorm2, d, euclidean ? 1 : 0, pointers, factors, n, &fast)
                lodestone_cc_pair_estimates_portable(pointers[a], own, centerNorm2, d, euclidean ? 1 : 0, pointers,
                                                     factors, n, &portable)
                for r in 0..<n {
                    let ip = zip(decodedRows[a], decodedRows[r]).reduce(0.0) { $0 + $1.0 * $1.1 }
                    let norms = [a, r].reduce(0.0) { sum, row in
                        sum + rows[row * d..<(row + 1) * d].reduce(0.0) { $0 + Double($1) * Double($1) }
                    }
                    let reference = euclidean ? norms - 2 * ip : -ip
                    let bound = 2e-5 * Double(d) * max(1, abs(reference))
                    #expect(abs(Double(fast[r]) - reference) <= bound, "d \(d) pair \(a),\(r): \(fast[r]) against \(reference)")
                    #expect(abs(Double(portable[r]) - reference) <= bound, "d \(d) pair \(a),\(r): \(portable[r]) against \(reference)")
                }
            }
        }
    }

    @Test("the neighbour choice on codes keeps what a walk pair by pair keeps, by the heuristic and by the fill's rule, AVX2 and portable alike")
    func selectionKernel() throws {
        // Real embeddings: a base row and the rows nearest it (a node's
        // candidates), encoded against the first rows' mean.
        let data = Fixtures.realData.base, d = data.dimension, n = 80
        let pool = 1_000
        let nearest = Fixtures.bruteForce(base: Array(data.values[d..<(pool + 1) * d]), dimension: d,
                                          query: Array(data.values[0..<d]), metric: .cosine, k: n).map { $0.0 + 1 }
        let rows = Array(data.values[0..<d]) + nearest.flatMap { data.values[$0 * d..<($0 + 1) * d] }
        let center = (0..<d).map { i in (0..<pool).reduce(Float(0)) { $0 + data.values[$1 * d + i] } / Float(pool) }
        let stride = lodestone_cc_record_bytes(d)
        let records = UnsafeMutableRawPointer.allocate(byteCount: (n + 1) * stride, alignment: 64)
        defer { records.deallocate() }
        var pointers: [UnsafeRawPointer?] = []
        var factors: [Float] = []
        for r in 0...n {
            rows.withUnsafeBufferPointer { lodestone_cc_encode($0.baseAddress! + r * d, center, d, records + r * stride) }
            pointers.append(UnsafeRawPointer(records + r * stride))
            var f: [Float] = [0, 0]
            lodestone_cc_pair_factors(records + r * stride, center, d, &f)
            factors += f
        }
        let centerNorm2 = Float(center.reduce(0.0) { $0 + Double($1) * Double($1) })
        func estimate(_ a: Int, _ b: Int, euclidean: Int32, portable: Bool = true) -> Float {
            var out: Float = 0
            let fa = Array(factors[2 * a..<2 * a + 2]), fb = Array(factors[2 * b..<2 * b + 2])
            let pairs = portable ? lodestone_cc_pair_estimates_portable : lodestone_cc_pair_estimates
            pairs(pointers[a], fa, centerNorm2, d, euclidean, [pointers[b]], fb, 1, &out)
            return out
        }
        for euclidean: Int32 in [0, 1] {
            // Entries: records 1...n, sorted by their estimate from record 0 (the base).
            let order = (1...n).sorted { estimate(0, $0, euclidean: euclidean) < estimate(0, $1, euclidean: euclidean) }
            let entryRows = order.map { pointers[$0] }
            let entryFactors = order.flatMap { factors[2 * $0..<2 * $0 + 2] }
            let ranks = order.map { estimate(0, $0, euclidean: euclidean) }
            let alpha: Float = euclidean == 1 ? 0 : 2, beta: Float = euclidean == 1 ? 1 : 2
            let skip = (0..<n).map { UInt8($0 % 7 == 3 ? 1 : 0) }
            // The heuristic (stopping at its limit, or walking every entry),
            // then the fill's rule with kept links spread among the entries,
            // some farther from the base than entries they may admit.
            let cases: [(separation: Float, a: Float, b: Float, initial: [Int], limit: Int)] = [
                (1, 0, 1, [], 4), (1, 0, 1, [], 64), (1.1, alpha, beta, [0, 9, 20, 33, 50], 32),
            ]
            for c in cases {
                for portable in [false, true] {
                    // The reference: pair by pair, as the Swift walk did.
                    var expected = c.initial
                    for i in 0..<n where expected.count < c.limit && skip[i] == 0 && !c.initial.contains(i) {
                        let own = c.a + c.b * ranks[i]
                        let dominated = expected.contains { j in
                            ranks[j] <= ranks[i]
                                && c.separation
                                    * (c.a + c.b * estimate(order[i], order[j], euclidean: euclidean, portable: portable))
                                    < own
                        }
                        if !dominated { expected.append(i) }
                    }
                    var initialSkip = skip
                    for j in c.initial { initialSkip[j] = 1 }
                    var kept = [UInt32](repeating: 0, count: c.limit)
                    for (k, j) in c.initial.enumerated() { kept[k] = UInt32(j) }
                    let select = portable ? lodestone_cc_select_portable : lodestone_cc_select
                    let count = select(entryRows, entryFactors, ranks, initialSkip, n, &kept, c.initial.count, c.limit,
                                       c.separation, c.a, c.b, centerNorm2, d, euclidean)
                    #expect(kept[0..<count].map { Int($0) } == expected,
                            "euclidean \(euclidean) separation \(c.separation) limit \(c.limit) portable \(portable)")
                    // Each case keeps some entries and drops some; the first stops at its limit.
                    #expect(expected.count > c.initial.count + 2)
                    #expect(c.limit == 4 ? expected.count == 4 : expected.count < min(c.limit, n))
                }
            }
        }
    }

    @Test("a compact index links on its codes and finds what one linked on float32 finds (recall within 0.01 at ef 32 and 64); opened from its segment it links on the persisted codes")
    func codedGraphMatchesFloatGraph() throws {
        let data = Fixtures.realData
        let d = data.base.dimension
        let keys = (0..<UInt64(data.base.rows)).map { $0 }
        func built(onCodes: Bool) throws -> HNSWIndex {
            let index = try HNSWIndex(dimension: d, metric: .cosine,
                                      parameters: HNSWParameters(m: 16, efConstruction: 64, traversal: .compact))
            if !onCodes { index.compactCodes!.linksOnFloat.store(true, ordering: .relaxed) }
            try index.add(contentsOf: data.base.values, keys: keys, threads: 2)
            #expect((index.linkingCodes != nil) == onCodes)
            return index
        }
        let coded = try built(onCodes: true), plain = try built(onCodes: false)
        for ef in [32, 64] {
            let a = try QuantizedTraversalTests.recall(coded, base: data.base.values, keys: keys, queries: data, count: 100, ef: ef)
            let b = try QuantizedTraversalTests.recall(plain, base: data.base.values, keys: keys, queries: data, count: 100, ef: ef)
            #expect(a >= b - 0.01, "ef \(ef): linked on codes \(a), on float32 \(b)")
        }
        _ = QuantizedTraversalTests.meanLayerZeroDegree(coded)
        try coded.verify()

        let dir = Fixtures.temporaryDirectory("build-codes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/index.lds"
        try coded.persist(to: path)
        let opened = try HNSWIndex.open(path: path)
        #expect(opened.linkingCodes == nil)
        let extra = Fixtures.randomVectors(count: 50, dimension: d, seed: 5)
        try opened.add(contentsOf: Array(extra[0..<d]), keys: [1_000_000], threads: 1)
        #expect(opened.linkingCodes != nil)
        // The factors are computed from the persisted codes on first use,
        // so one insert computes only the few it ranks, and they are those
        // written with the codes.
        let codes = try #require(opened.compactCodes), original = try #require(coded.compactCodes)
        let untouched = (0..<UInt32(data.base.rows)).filter { codes.pairFactors.record($0).load(as: UInt64.self) == .max }
        #expect(untouched.count > data.base.rows / 2, "an insert computes only the factors it uses")
        try opened.add(contentsOf: Array(extra[d...]), keys: (1..<50).map { 1_000_000 + UInt64($0) }, threads: 2)
        #expect(try opened.search(Array(extra[0..<d]), k: 1).first?.key == 1_000_000)
        for id: UInt32 in [0, 1, UInt32(data.base.rows - 1)] + untouched.prefix(3) {
            #expect(codes.pairFactor(id) == original.pairFactor(id))
            #expect(codes.pairFactors.record(id).load(as: UInt64.self) == original.pairFactors.record(id).load(as: UInt64.self))
        }
        func estimate(_ c: CompactCodes) -> Float {
            var out: Float = 0
            [UInt32(1_000)].withUnsafeBufferPointer { c.estimate(from: 3, nodes: $0, into: &out) }
            return out
        }
        #expect(estimate(codes) == estimate(original))
    }

    @Test("a compact index in a directory keeps its vectors in a scratch file, not memory: it answers as one in memory does, persists them with their checksums, and spills what it adds after reopening")
    func vectorsSpillToScratchFile() throws {
        let data = Fixtures.realData
        let d = data.base.dimension
        let parameters = HNSWParameters(m: 16, efConstruction: 64, traversal: .compact)
        let dir = Fixtures.temporaryDirectory("spill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func answers(_ index: HNSWIndex) throws -> [[Neighbor]] {
            try (0..<20).map { try index.search(data.queries.row($0), k: 10, ef: 64) }
        }
        let plain = try HNSWIndex(dimension: d, metric: .cosine, parameters: parameters)
        do {
            let durable = try DurableIndex.create(directory: dir, dimension: d, metric: .cosine, parameters: parameters)
            for start in stride(from: 0, to: data.base.rows, by: 1_000) {
                let end = min(data.base.rows, start + 1_000)
                let rows = Array(data.base.values[start * d..<end * d])
                let keys = (start..<end).map { UInt64($0) }
                try durable.upsert(rows, keys: keys, threads: 1)
                try plain.add(contentsOf: rows, keys: keys, threads: 1)
            }
            let spilled = durable.index
            #expect(spilled.spillsVectors && !plain.spillsVectors)
            #expect(spilled.vectors.allocatedBytes == 0)
            #expect(spilled.vectors.spilledBytes >= data.base.rows * spilled.vectors.stride)
            #expect(spilled.memoryBytes < plain.memoryBytes - data.base.rows * spilled.vectors.stride / 2)
            // The same batches on one thread build the same graph: the same answers.
            #expect(try answers(spilled) == answers(plain))
            #expect(spilled.vector(forKey: 17) == plain.vector(forKey: 17))
            // Persisting reads the vectors back from the file.
            try durable.persist()
        }
        // The reopened index verifies each vector against its checksum, and
        // spills the chunks it adds.
        do {
            let reopened = try DurableIndex.open(directory: dir)
            #expect(try answers(reopened.index) == answers(plain))
            try reopened.index.verify()
            #expect(reopened.index.spillsVectors && reopened.index.vectors.spilledBytes == 0)
            let n = NodeArena.chunkSize
            let extra = Fixtures.randomVectors(count: n, dimension: d, seed: 5)
            try reopened.upsert(extra, keys: (0..<UInt64(n)).map { 1_000_000 + $0 }, threads: 2)
            #expect(reopened.index.vectors.spilledBytes > 0)
            #expect(try reopened.index.search(Array(extra[d..<2 * d]), k: 1).first?.key == 1_000_001)
            try reopened.persist()
        }
        let last = try DurableIndex.open(directory: dir)
        #expect(last.index.count == data.base.rows + NodeArena.chunkSize)
        try last.index.verify()
    }
}
