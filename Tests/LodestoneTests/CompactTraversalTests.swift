import CLodestoneKernels
import Foundation
import Testing

@testable import Lodestone

@Suite("Compact traversal")
struct CompactTraversalTests {
    /// The vector a record stands for (Float64), from its levels as the
    /// documented layout places them.
    static func decoded(record: UnsafeRawPointer, center: [Float]) -> [Double] {
        let d = center.count
        let tail = record + (d + 63) / 64 * 32
        let lo = Double(tail.loadUnaligned(as: Float.self)), step = Double((tail + 4).loadUnaligned(as: Float.self))
        return (0..<d).map { i in
            let j = i % 64
            let byte = record.load(fromByteOffset: (i / 64) * 32 + (j % 16) + 16 * (j / 32), as: UInt8.self)
            let level = (i % 32) >= 16 ? byte >> 4 : byte & 15
            return Double(center[i]) + lo + step * Double(level)
        }
    }

    /// The estimator of `lodestone_kernels.h` in Float64, from a record's
    /// levels as the documented layout places them.
    static func documentedEstimate(record: UnsafeRawPointer, q: [Float], center: [Float], euclidean: Bool) -> Double {
        let d = q.count
        let norm2 = Double((record + (d + 63) / 64 * 32 + 8).loadUnaligned(as: Float.self))
        let x = decoded(record: record, center: center)
        var ip = 0.0
        for i in 0..<d { ip += Double(q[i]) * x[i] }
        if euclidean {
            let qq = q.reduce(0.0) { $0 + Double($1) * Double($1) }
            return qq + norm2 - 2 * ip
        }
        return -ip
    }

    @Test("estimates follow the documented estimator (Float64), AVX2 and portable alike, at any dimension; codes decode to their vectors within half a step",
          arguments: [1, 5, 64, 100, 384, 1_536])
    func estimator(dimension d: Int) throws {
        let n = 40
        let rows = Fixtures.randomVectors(count: n, dimension: d, seed: UInt64(d), scale: -1...1)
        let center = Fixtures.randomVectors(count: 1, dimension: d, seed: 99, scale: -0.2...0.2)
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 7, scale: -1...1)
        let stride = lodestone_cc_record_bytes(d)
        #expect(stride % 16 == 0 && stride >= (d + 63) / 64 * 32 + 12)
        let records = UnsafeMutableRawPointer.allocate(byteCount: n * stride, alignment: 64)
        defer { records.deallocate() }
        var pointers: [UnsafeRawPointer?] = []
        for r in 0..<n {
            let record = records + r * stride
            rows.withUnsafeBufferPointer { lodestone_cc_encode($0.baseAddress! + r * d, center, d, record) }
            pointers.append(UnsafeRawPointer(record))
            // Each level decodes to the component within half a step.
            let tail = UnsafeRawPointer(record) + (d + 63) / 64 * 32
            let lo = tail.loadUnaligned(as: Float.self), step = (tail + 4).loadUnaligned(as: Float.self)
            for i in 0..<d {
                let j = i % 64
                let byte = UnsafeRawPointer(record).load(fromByteOffset: (i / 64) * 32 + (j % 16) + 16 * (j / 32), as: UInt8.self)
                let level = (i % 32) >= 16 ? byte >> 4 : byte & 15
                let decoded = center[i] + lo + step * Float(level)
                #expect(abs(decoded - rows[r * d + i]) <= step / 2 + 1e-5, "row \(r) component \(i)")
            }
        }
        for euclidean in [false, true] {
            let q8 = UnsafeMutablePointer<Int8>.allocate(capacity: lodestone_cc_query_bytes(d))
            defer { q8.deallocate() }
            var query = lodestone_cc_query()
            lodestone_cc_prepare(q, center, d, euclidean ? 1 : 0, q8, &query)
            var fast = [Float](repeating: 0, count: n), portable = [Float](repeating: 0, count: n)
            lodestone_cc_estimates(q8, &query, d, pointers, n, &fast)
            lodestone_cc_estimates_portable(q8, &query, d, pointers, n, &portable)
            #expect(fast == portable)
            let scale = Double(query.scale)
            for r in 0..<n {
                let reference = Self.documentedEstimate(record: pointers[r]!, q: q, center: center, euclidean: euclidean)
                // The query's int8 rounding: at most half its scale per
                // component, times the code's largest level value.
                let tail = pointers[r]! + (d + 63) / 64 * 32
                let step = Double((tail + 4).loadUnaligned(as: Float.self))
                let bound = Double(d) * scale / 2 * 15 * step * (euclidean ? 2 : 1) + 1e-3 * max(1, abs(reference))
                #expect(abs(Double(fast[r]) - reference) <= bound, "d \(d) row \(r): \(fast[r]) against \(reference)")
            }
        }
    }

    static let realCompact: HNSWIndex = {
        let data = Fixtures.realData
        let index = try! HNSWIndex(dimension: data.base.dimension, metric: .cosine,
                                   parameters: HNSWParameters(m: 16, efConstruction: 64, traversal: .compact))
        try! index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 }, threads: 2)
        return index
    }()

    @Test("finds the top 10 of real embeddings against Float64 brute force (recall ≥ 0.93 at ef 64, ≥ 0.98 at ef 200), with exact scores; the center is the first batch's mean")
    func recallOnRealData() throws {
        let data = Fixtures.realData
        let index = Self.realCompact
        let codes = try #require(index.compactCodes)
        #expect(codes.isReady && index.neighbourCodes == nil)
        let d = data.base.dimension
        let mean = (0..<d).map { i in (0..<data.base.rows).reduce(0.0) { $0 + Double(data.base.values[$1 * d + i]) } / Double(data.base.rows) }
        #expect(zip(codes.center, mean).allSatisfy { abs(Double($0) - $1) < 1e-5 })
        let keys = (0..<UInt64(data.base.rows)).map { $0 }
        let low = try QuantizedTraversalTests.recall(index, base: data.base.values, keys: keys, queries: data, count: 100, ef: 64)
        let high = try QuantizedTraversalTests.recall(index, base: data.base.values, keys: keys, queries: data, count: 100, ef: 200)
        #expect(low >= 0.93, "recall@10 at ef 64: \(low)")
        #expect(high >= 0.98, "recall@10 at ef 200: \(high)")
        let q = data.queries.row(11)
        let exact = Dictionary(uniqueKeysWithValues: Fixtures.bruteForce(base: data.base.values, dimension: d, query: q,
                                                                        metric: .cosine, k: 200).map { (UInt64($0.0), $0.1) })
        for hit in try index.search(q, k: 10, ef: 64) {
            let reference = try #require(exact[hit.key])
            #expect(abs(Double(hit.score) - reference) <= 1e-4)
        }
        // Far fewer resident bytes than the quantized traversal's blocks.
        #expect(codes.allocatedBytes < index.vectors.allocatedBytes / 5)
        // A filtered query returns passing results whichever plan it takes;
        // the post-filtered walk (a broad filter's, on a larger index) is
        // the compact walk keeping only the passing nodes.
        let even = Bitset(capacity: data.base.rows, slots: stride(from: 0, to: data.base.rows, by: 2))
        let filtered = try index.search(q, k: 10, ef: 64, allowedKeys: even)
        #expect(filtered.results.count == 10 && filtered.results.allSatisfy { $0.key % 2 == 0 })
        let norm = q.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let unit = q.map { $0 / norm }
        let walked = unit.withUnsafeBufferPointer {
            index.postFilteredWalk($0.baseAddress!, k: 10, ef: 64, admission: FilterAdmission(index: index, keys: even, nodes: nil))
        }
        let truth = Fixtures.bruteForce(base: data.base.values, dimension: d, query: q, metric: .cosine, k: 40)
            .map { UInt64($0.0) }.filter { $0 % 2 == 0 }.prefix(10)
        #expect(walked.results.allSatisfy { $0.key % 2 == 0 } && walked.results.count == 10)
        #expect(Set(walked.results.map(\.key)).intersection(truth).count >= 8)
    }

    @Test("codes are persisted (format 1.3 and later) and used in place on reopening; a compacting persist keeps them; verify finds a code that is not its vector's")
    func persistAndReopen() throws {
        let data = Fixtures.realData
        let index = Self.realCompact
        let dir = Fixtures.temporaryDirectory("compact-reopen")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/graph.seg"
        try index.persist(to: path)
        let reopened = try HNSWIndex.open(path: path)
        #expect(reopened.parameters.traversal == .compact)
        let codes = try #require(reopened.compactCodes)
        #expect(codes.isReady && codes.inBase && reopened.nodesLinked == 0)
        #expect(codes.center == index.compactCodes!.center)
        for qi in 0..<50 {
            let q = data.queries.row(qi)
            #expect(try reopened.search(q, k: 10, ef: 64) == index.search(q, k: 10, ef: 64))
        }
        try reopened.verify()
        // Removing nodes, then a compacting persist: the codes move with
        // their vectors, so the renumbered index answers the same.
        for key in Swift.stride(from: UInt64(0), to: 200, by: 3) { #expect(reopened.remove(key: key)) }
        try reopened.persist(to: dir + "/compact.seg", compact: true)
        let compacted = try HNSWIndex.open(path: dir + "/compact.seg")
        #expect(compacted.compactCodes!.isReady && compacted.count == reopened.count)
        try compacted.verify()
        for qi in 0..<50 {
            let q = data.queries.row(qi)
            #expect(try compacted.search(q, k: 10, ef: 64).map(\.key) == reopened.search(q, k: 10, ef: 64).map(\.key))
        }
        // New vectors after reopening are coded against the persisted center.
        try compacted.add(contentsOf: data.queries.row(0), keys: [1_000_000])
        #expect(try compacted.search(data.queries.row(0), k: 1, ef: 64).first?.key == 1_000_000)
        try compacted.verify()
        // One code byte changed in the file: its chunk fails its checksum.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let segment = try MappedSegment(path: path)
        let entry = try segment.entry(SectionKind.hnswCompactCodes)
        bytes[Int(entry.offset) + 5 * codes.records.stride + 3] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/damaged.seg"))
        let damaged = try HNSWIndex.open(path: dir + "/damaged.seg")
        #expect(throws: LodestoneError.self) { try damaged.verify() }
    }

    @Test("a compact segment's vectors are verified record by record (format 1.4); a damaged vector fails the search that reads it, and verify names it or its checksum")
    func vectorsVerifiedRecordByRecord() throws {
        let data = Fixtures.realData
        // Whole 4,096-record chunks are verified record by record: on the
        // 2,000-row sample, its rows twice over with fresh keys.
        let index: HNSWIndex
        if data.base.rows >= 4_096 {
            index = Self.realCompact
        } else {
            index = try HNSWIndex(dimension: data.base.dimension, metric: .cosine,
                                  parameters: HNSWParameters(m: 16, efConstruction: 64, traversal: .compact))
            for round in 0..<3 {
                let keys = (0..<UInt64(data.base.rows)).map { $0 + UInt64(round * data.base.rows) }
                try index.add(contentsOf: data.base.values, keys: keys, threads: 2)
            }
        }
        let dir = Fixtures.temporaryDirectory("compact-records")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/graph.seg"
        try index.persist(to: path)
        let segment = try MappedSegment(path: path)
        #expect(segment.minorVersion == 4)
        let sums = try segment.entry(SectionKind.hnswVectorChecksums)
        let vectors = try segment.entry(SectionKind.vectors)
        let stride = index.vectors.stride
        #expect(sums.count == vectors.count && sums.stride == 4)
        for id in [0, 1, vectors.count - 1] {
            let stored = (segment.base + sums.offset + 4 * id).loadUnaligned(as: UInt32.self)
            #expect(stored == lodestone_crc32c(0, segment.base + vectors.offset + id * stride, stride))
        }
        // Removals repair their neighbours' links on the codes, as inserts
        // link: no float32 vector is read.
        let pruned = try HNSWIndex.open(path: path)
        for key in Swift.stride(from: UInt64(0), to: 200, by: 3) { #expect(pruned.remove(key: key)) }
        #expect(pruned.vectors.verifiedRecordCount == 0)
        #expect(try pruned.search(data.queries.row(0), k: 10, ef: 64).count == 10)
        #expect(pruned.vectors.verifiedRecordCount > 0)
        // Warming for a batch job verifies the graph and the codes, not the
        // vectors it will read only as finalists.
        let warmed = try HNSWIndex.open(path: path)
        warmed.warm(threads: 2)
        #expect(warmed.vectors.verifiedRecordCount == 0)

        let reopened = try HNSWIndex.open(path: path)
        #expect(reopened.vectors.verifiesRecords)
        // Searches keep no float32 vector hot: the code (208 bytes at
        // 384-d), its checksum, 32 links, key, state, level, upper layers.
        #expect(reopened.residentBytesPerVector >= 208 + 4 + 128 + 14 && reopened.residentBytesPerVector <= 400)
        for qi in 0..<20 {
            let q = data.queries.row(qi)
            #expect(try reopened.search(q, k: 10, ef: 64) == index.search(q, k: 10, ef: 64))
        }
        try reopened.verify()

        // One byte of node 7's vector: the search for that vector re-ranks
        // it and fails; verify names the record.
        let damagedNode = 7
        let query = Array(UnsafeBufferPointer(start: index.vector(UInt32(damagedNode)), count: data.base.dimension))
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        func damaged(_ at: Int, _ name: String) throws -> HNSWIndex {
            var bytes = original
            bytes[at] ^= 0x40
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name))
            return try HNSWIndex.open(path: dir + "/" + name)
        }
        func names(_ section: String, _ detail: String) -> (any Error) -> Bool {
            { error in
                guard case let .corruptSegment(_, s, reason)? = error as? LodestoneError else { return false }
                return s == section && reason.contains(detail)
            }
        }
        let badVector = try damaged(vectors.offset + damagedNode * stride + 11, "vector.seg")
        #expect { try badVector.search(query, k: 10, ef: 64) } throws: { names("vectors", "record \(damagedNode)")($0) }
        let badVector2 = try damaged(vectors.offset + damagedNode * stride + 11, "vector2.seg")
        #expect { try badVector2.verify() } throws: { names("vectors", "record \(damagedNode)")($0) }
        // A compacting persist writes every kept vector under a fresh
        // checksum: it verifies each one first, so damage is not laundered.
        let badVector3 = try damaged(vectors.offset + damagedNode * stride + 11, "vector3.seg")
        // The removed node is the farthest from the damaged one, so that
        // repairing its neighbourhood reads none of its vectors.
        let victim = try #require(badVector3.search(query.map { -$0 }, k: 1, ef: 64).first?.key)
        #expect(badVector3.remove(key: victim))
        #expect(badVector3.corruption() == nil, "the removal read the damaged vector")
        #expect { try badVector3.persist(to: dir + "/laundered.seg", compact: true) } throws: {
            names("vectors", "record \(damagedNode)")($0)
        }
        // A plain persist reads each vector only as it writes it: the
        // damage found on the way abandons the file before it is renamed.
        let badVector4 = try damaged(vectors.offset + damagedNode * stride + 11, "vector4.seg")
        #expect { try badVector4.persist(to: dir + "/laundered2.seg") } throws: {
            names("vectors", "record \(damagedNode)")($0)
        }
        for name in ["laundered.seg", "laundered2.seg"] {
            #expect(!FileManager.default.fileExists(atPath: dir + "/" + name))
        }
        // A damaged checksum: its chunk of checksums fails first.
        let badSum = try damaged(sums.offset + 4 * damagedNode, "sums.seg")
        #expect { try badSum.verify() } throws: { names("hnsw.vector-checksums", "checksum mismatch")($0) }
    }

    @Test("an index without a center takes the mean of its first rows; bad traversal codes are refused by the manifest and the C ABI's checks")
    func centerAndStorage() throws {
        let index = try HNSWIndex(dimension: 3, metric: .euclidean, parameters: HNSWParameters(m: 4, traversal: .compact))
        #expect(index.compactCodes?.isReady == false)
        #expect(throws: LodestoneError.self) { try index.search([1, 2, 3], k: 1) }  // empty: the center stays open
        #expect(index.compactCodes?.isReady == false)
        try index.add(contentsOf: [1, 2, 3, 3, 4, 5], keys: [1, 2])
        #expect(index.compactCodes?.center == [2, 3, 4])
        try index.add([10, 10, 10], key: 3)
        #expect(index.compactCodes?.center == [2, 3, 4])
        #expect(try index.search([9, 9, 9], k: 1).first?.key == 3)
        try index.verify()
        // A code that is not its vector's (memory damaged after writing):
        // verify names the section.
        let code = index.compactCodes!.records.record(1)
        code.storeBytes(of: code.load(as: UInt8.self) ^ 0x11, as: UInt8.self)
        #expect {
            try index.verify()
        } throws: { error in
            guard case let .corruptSegment(_, section, reason)? = error as? LodestoneError else { return false }
            return section == "hnsw.compact-codes" && reason.contains("node 1")
        }
        #expect(HNSWParameters.Traversal(storageCode: 2) == .compact && HNSWParameters.Traversal.compact.storageCode == 2)
        #expect(HNSWParameters.Traversal(storageCode: 3) == nil)
        let settings = VectorSettings(dimension: 4, metric: .cosine, parameters: HNSWParameters(traversal: .compact), model: "m")
        var w = ByteWriter()
        settings.encode(into: &w)
        var r = ByteReader(w.bytes) { .corruptSegment(path: "", section: "", reason: "short") }
        #expect(try VectorSettings.decode(from: &r) { .corruptSegment(path: "", section: "manifest", reason: $0) } == settings)
    }
}
