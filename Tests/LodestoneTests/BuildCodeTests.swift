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

    @Test("estimates follow the documented estimator (Float64), AVX2 and portable alike, at any dimension; codes decode to their vectors within half a step",
          arguments: [1, 5, 16, 100, 384, 1_536])
    func estimator(dimension d: Int) throws {
        let n = 40
        let rows = Fixtures.randomVectors(count: n, dimension: d, seed: UInt64(d), scale: -1...1)
        let center = Fixtures.randomVectors(count: 1, dimension: d, seed: 99, scale: -0.2...0.2)
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 7, scale: -1...1)
        let stride = lodestone_bc_record_bytes(d)
        #expect(stride == (d + 15) / 16 * 16 + 16)
        let records = UnsafeMutableRawPointer.allocate(byteCount: n * stride, alignment: 64)
        defer { records.deallocate() }
        var pointers: [UnsafeRawPointer?] = []
        var decoded = [Float](repeating: 0, count: d)
        for r in 0..<n {
            let record = records + r * stride
            rows.withUnsafeBufferPointer { lodestone_bc_encode($0.baseAddress! + r * d, center, d, record) }
            pointers.append(UnsafeRawPointer(record))
            let tail = UnsafeRawPointer(record) + (d + 15) / 16 * 16
            let lo = tail.loadUnaligned(as: Float.self), step = (tail + 4).loadUnaligned(as: Float.self)
            lodestone_bc_decode(record, center, d, &decoded)
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
}
