import CLodestoneKernels
import Foundation
import Testing

@testable import Lodestone

@Suite("Build codes: a compact index links its nodes on 8-bit codes")
struct BuildCodeTests {
    /// The estimator of `lodestone_kernels.h` in Float64, from a record's
    /// levels as the documented layout places them.
    static func documentedEstimate(record: UnsafeRawPointer, q: [Float], center: [Float], euclidean: Bool) -> Double {
        let d = q.count
        let tail = record + (d + 15) / 16 * 16
        let lo = Double(tail.loadUnaligned(as: Float.self)), step = Double((tail + 4).loadUnaligned(as: Float.self))
        let norm2 = Double((tail + 8).loadUnaligned(as: Float.self))
        var ip = 0.0
        for i in 0..<d {
            ip += Double(q[i]) * (Double(center[i]) + lo + step * Double(record.load(fromByteOffset: i, as: UInt8.self)))
        }
        if euclidean { return q.reduce(0.0) { $0 + Double($1) * Double($1) } + norm2 - 2 * ip }
        return -ip
    }

    @Test("estimates follow the documented estimator (Float64), AVX2 and portable alike, at any dimension; codes decode to their vectors within half a step; code-to-code estimates are the decoded vectors' ranks",
          arguments: [1, 5, 16, 100, 384, 1_536])
    func estimator(dimension d: Int) throws {
        let n = 40
        let rows = Fixtures.randomVectors(count: n, dimension: d, seed: UInt64(d), scale: -1...1)
        let center = Fixtures.randomVectors(count: 1, dimension: d, seed: 99, scale: -0.2...0.2)
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 7, scale: -1...1)
        let stride = lodestone_bc_record_bytes(d)
        #expect(stride == (d + 15) / 16 * 16 + 24)
        let records = UnsafeMutableRawPointer.allocate(byteCount: n * stride, alignment: 64)
        defer { records.deallocate() }
        var pointers: [UnsafeRawPointer?] = []
        var decoded = [Float](repeating: 0, count: d)
        var decodedRows: [[Float]] = []
        for r in 0..<n {
            let record = records + r * stride
            rows.withUnsafeBufferPointer { lodestone_bc_encode($0.baseAddress! + r * d, center, d, record) }
            pointers.append(UnsafeRawPointer(record))
            let tail = UnsafeRawPointer(record) + (d + 15) / 16 * 16
            let lo = tail.loadUnaligned(as: Float.self), step = (tail + 4).loadUnaligned(as: Float.self)
            lodestone_bc_decode(record, center, d, &decoded)
            decodedRows.append(decoded)
            for i in 0..<d {
                let level = UnsafeRawPointer(record).load(fromByteOffset: i, as: UInt8.self)
                #expect(decoded[i] == center[i] + lo + step * Float(level))
                #expect(abs(decoded[i] - rows[r * d + i]) <= step / 2 + 1e-5, "row \(r) component \(i)")
            }
        }
        var padded = q + [Float](repeating: 0, count: (d + 15) / 16 * 16 - d)
        for euclidean in [false, true] {
            var query = lodestone_cc_query()
            lodestone_bc_prepare(q, center, d, euclidean ? 1 : 0, &query)
            var fast = [Float](repeating: 0, count: n), portable = [Float](repeating: 0, count: n)
            lodestone_bc_estimates(&padded, &query, d, pointers, n, &fast)
            lodestone_bc_estimates_portable(&padded, &query, d, pointers, n, &portable)
            for r in 0..<n {
                let reference = Self.documentedEstimate(record: pointers[r]!, q: q, center: center, euclidean: euclidean)
                // Float32 sums of d products, in two orders.
                let bound = 1e-5 * Double(d) * max(1, abs(reference))
                #expect(abs(Double(fast[r]) - reference) <= bound, "d \(d) row \(r): \(fast[r]) against \(reference)")
                #expect(abs(Double(portable[r]) - reference) <= bound, "d \(d) row \(r): \(portable[r]) against \(reference)")
            }
            // Codes against codes: the rank of the two decoded vectors (exact norms for euclidean).
            let centerNorm2 = center.reduce(0.0) { $0 + Double($1) * Double($1) }
            for a in [0, 7, n - 1] {
                lodestone_bc_pair_estimates(pointers[a], Float(centerNorm2), d, euclidean ? 1 : 0, pointers, n, &fast)
                lodestone_bc_pair_estimates_portable(pointers[a], Float(centerNorm2), d, euclidean ? 1 : 0, pointers, n,
                                                     &portable)
                for r in 0..<n {
                    let ip = zip(decodedRows[a], decodedRows[r]).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
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

    @Test("a compact index links on build codes and finds what one linked on float32 finds (recall within 0.01 at ef 32 and 64); opened from its segment it links on float32")
    func codedGraphMatchesFloatGraph() throws {
        let data = Fixtures.realData
        let d = data.base.dimension
        let keys = (0..<UInt64(data.base.rows)).map { $0 }
        func built(onCodes: Bool) throws -> HNSWIndex {
            let index = try HNSWIndex(dimension: d, metric: .cosine,
                                      parameters: HNSWParameters(m: 16, efConstruction: 64, traversal: .compact))
            if !onCodes { index.buildCodes!.declined.store(true, ordering: .relaxed) }
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
        try opened.add(contentsOf: extra, keys: (0..<50).map { 1_000_000 + UInt64($0) }, threads: 2)
        #expect(try opened.search(Array(extra[0..<d]), k: 1).first?.key == 1_000_000)
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
