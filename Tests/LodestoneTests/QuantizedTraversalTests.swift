import CLodestoneKernels
import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// The quantized traversal: the neighbour-code kernel against a Float64
/// reference of its documented estimator, and the walk against exact
/// search on real embeddings, through inserts, removals, reuse, persistence
/// and concurrent writes.
@Suite("Quantized traversal (neighbour codes)")
struct QuantizedTraversalTests {
    @Test("estimates equal the documented estimator (Float64) within the table's rounding, every variant this CPU runs and portable alike; masks and empty slots as documented",
          arguments: [(1, 16), (5, 32), (64, 32), (100, 48), (384, 32), (1_536, 32)])
    func estimator(dimension d: Int, slots: Int) {
        for (name, kernels) in NeighbourCodeKernels.variants {
            estimator(kernels, name, dimension: d, slots: slots)
        }
    }

    func estimator(_ kernels: lodestone_qg_kernels, _ name: String, dimension d: Int, slots: Int) {
        let portableKernels = NeighbourCodeKernels.portable
        let block = UnsafeMutableRawPointer.allocate(byteCount: lodestone_qg_block_bytes(d, slots), alignment: 64)
        defer { block.deallocate() }
        lodestone_qg_clear_block(block, d, slots)
        let c = Fixtures.randomVectors(count: 1, dimension: d, seed: 3, scale: -1...1)
        let xs = Fixtures.randomVectors(count: slots, dimension: d, seed: UInt64(d), scale: -1...1)
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 11, scale: -1...1)
        let used = Array(stride(from: 0, to: slots, by: 1)).filter { $0 % 5 != 3 }  // holes stay empty
        let groups = lodestone_qg_groups(d)
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: groups * 16)
        defer { table.deallocate() }
        var query = lodestone_qg_query()
        kernels.prepare(q, d, table, &query)
        // The SIMD table equals the portable one, give or take a rounding
        // step (they sum a group's components in different orders).
        let portableTable = UnsafeMutablePointer<UInt8>.allocate(capacity: groups * 16)
        defer { portableTable.deallocate() }
        var portableQuery = lodestone_qg_query()
        portableKernels.prepare(q, d, portableTable, &portableQuery)
        #expect(query.scale == portableQuery.scale && query.offset == portableQuery.offset)
        #expect((0..<(groups * 16)).allSatisfy { abs(Int(table[$0]) - Int(portableTable[$0])) <= 1 })
        // The table's step: the widest group's range over 255.
        var width = 0.0
        for g in 0..<groups {
            let part = (min(d, 4 * g)..<min(d, 4 * g + 4)).map { Double(q[$0]) }
            width = max(width, part.filter { $0 > 0 }.reduce(0, +) - part.filter { $0 < 0 }.reduce(0, +))
        }
        let delta = width / 255
        for euclidean in [false, true] {
            let twin = UnsafeMutableRawPointer.allocate(byteCount: lodestone_qg_block_bytes(d, slots), alignment: 64)
            defer { twin.deallocate() }
            lodestone_qg_clear_block(twin, d, slots)
            for j in used {
                let x = Array(xs[(j * d)..<((j + 1) * d)])
                kernels.encode(block, d, slots, j, UInt32(1_000 + j), x, c, euclidean ? 1 : 0)
                portableKernels.encode(twin, d, slots, j, UInt32(1_000 + j), x, c, euclidean ? 1 : 0)
            }
            // SIMD and portable encodings: the same ids and bits, factors
            // equal to float rounding (they sum in different orders).
            let idBytes = lodestone_qg_batches(slots) * 32 * 4, codeBytes = groups * 16, batchBytes = codeBytes + 256
            #expect(memcmp(block, twin, idBytes) == 0)
            for b in 0..<lodestone_qg_batches(slots) {
                let at = idBytes + b * batchBytes
                #expect(memcmp(block + at, twin + at, codeBytes) == 0)
                for f in 0..<64 {
                    let fast = block.load(fromByteOffset: at + codeBytes + 4 * f, as: Float.self)
                    let slow = twin.load(fromByteOffset: at + codeBytes + 4 * f, as: Float.self)
                    #expect(fast == slow || abs(fast - slow) <= 1e-4 * max(1, abs(slow)), "factor \(f): \(fast) vs \(slow)")
                }
            }
            let base: Float = 0.25
            let n = lodestone_qg_batches(slots) * 32
            var fast = [Float](repeating: 0, count: n), portable = fast
            var fastMasks = [UInt32](repeating: 0, count: n / 32), portableMasks = fastMasks
            let threshold: Float = base + (euclidean ? 2 * Float(d) / 3 : 0)
            kernels.estimate(block, d, slots, table, &query, base, threshold, &fast, &fastMasks)
            portableKernels.estimate(block, d, slots, table, &query, base, threshold, &portable, &portableMasks)
            let ids = block.assumingMemoryBound(to: UInt32.self)
            for j in 0..<n {
                #expect(abs(fast[j] - portable[j]) <= 1e-4 * max(1, abs(portable[j])) || (fast[j].isInfinite && portable[j].isInfinite),
                        "\(name) slot \(j): \(fast[j]) vs portable \(portable[j])")
                let bit = fastMasks[j / 32] >> UInt32(j % 32) & 1
                #expect((bit == 1) == (fast[j] < threshold), "slot \(j): mask bit \(bit), estimate \(fast[j])")
                guard j < slots, used.contains(j) else {
                    #expect(j >= slots || ids[j] == UInt32.max)
                    #expect(bit == 0 && fast[j] == .infinity, "empty slot \(j) estimated \(fast[j])")
                    continue
                }
                #expect(ids[j] == UInt32(1_000 + j))
                // The documented estimator, in Float64: r = x - c, s its
                // signs, f = |r|^2 / |r|_1, <q-c, r> ~ f <q-c, s>.
                var l1 = 0.0, l2 = 0.0, qcs = 0.0, cr = 0.0
                for i in 0..<d {
                    let r = Double(xs[j * d + i]) - Double(c[i])
                    l1 += abs(r); l2 += r * r
                    qcs += (r > 0 ? 1 : -1) * (Double(q[i]) - Double(c[i]))
                    cr += Double(c[i]) * r
                }
                let f = l1 > 0 ? l2 / l1 : 0
                let reference = euclidean ? Double(base) + l2 - 2 * f * qcs : Double(base) - f * qcs - cr
                // Each group's entry is within half a step; <q, s> = 2 T - sum(q).
                let tolerance = (euclidean ? 2 : 1) * f * 2 * Double(groups) * delta / 2 * 1.01 + 1e-3
                #expect(abs(Double(fast[j]) - reference) <= tolerance,
                        "\(name) d \(d) slot \(j) euclidean \(euclidean): \(fast[j]) vs \(reference) (± \(tolerance))")
            }
            // Emptying a slot takes it out.
            lodestone_qg_clear(block, d, slots, used[0])
            kernels.estimate(block, d, slots, table, &query, base, .infinity, &fast, &fastMasks)
            #expect(fast[used[0]] == .infinity && fastMasks[0] & 1 << UInt32(used[0]) == 0)
        }
    }

    @Test("lookup sums past 16 bits do not wrap: at 1,536 dimensions a neighbour signed like the query in every component (each group at its largest entry, 97,920 in all) is estimated as the estimator says")
    func wideSums() {
        let d = 1_536, slots = 32, groups = lodestone_qg_groups(d)
        let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 5, scale: -1...1).map { Float($0 < 0 ? -1 : 1) }
        let r = Fixtures.randomVectors(count: 1, dimension: d, seed: 6).map { 0.05 + abs($0) }
        let c = [Float](repeating: 0, count: d)
        let x = zip(q, r).map { $0 * $1 }
        // r = x - c signed like q: <q - c, s> = |q|_1 = d.
        let l1 = r.reduce(0.0) { $0 + Double($1) }, l2 = r.reduce(0.0) { $0 + Double($1) * Double($1) }
        let reference = l2 - 2 * (l2 / l1) * Double(d)
        let block = UnsafeMutableRawPointer.allocate(byteCount: lodestone_qg_block_bytes(d, slots), alignment: 64)
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: groups * 16)
        defer { block.deallocate(); table.deallocate() }
        for (name, kernels) in NeighbourCodeKernels.variants {
            lodestone_qg_clear_block(block, d, slots)
            kernels.encode(block, d, slots, 0, 7, x, c, 1)
            var query = lodestone_qg_query()
            kernels.prepare(q, d, table, &query)
            // The neighbour's pattern in each group (its bits where q > 0) looks up 255.
            let patterns = (0..<groups).map { g in (0..<4).reduce(0) { $0 | (4 * g + $1 < d && q[4 * g + $1] > 0 ? 1 << $1 : 0) } }
            #expect(patterns.enumerated().allSatisfy { table[16 * $0.offset + $0.element] == 255 }, "\(name)")
            var out = [Float](repeating: 0, count: 32), masks = [UInt32](repeating: 0, count: 1)
            kernels.estimate(block, d, slots, table, &query, 0, .infinity, &out, &masks)
            // Every entry looked up is exact here (each group's sum is its
            // widest range), so only float rounding separates the two.
            #expect(abs(Double(out[0]) - reference) <= 1e-3 * abs(reference), "\(name): \(out[0]) vs \(reference)")
        }
    }

    @Test("the walk uses the best neighbour-code variant this CPU runs (AVX-512, then AVX2, then NEON), unless LODESTONE_KERNELS forces one")
    func activeVariant() {
        let names = NeighbourCodeKernels.variants.map(\.0)
        if let forced = ProcessInfo.processInfo.environment["LODESTONE_KERNELS"]?.lowercased(), names.contains(forced) {
            #expect(DistanceKernels.neighbourCodeISA.rawValue == forced)
        } else {
            let best = ["avx512", "avx2", "neon"].first { names.contains($0) } ?? "portable"
            #expect(DistanceKernels.neighbourCodeISA.rawValue == best)
        }
    }

    @Test("a node's rank value from its 8-bit code is within the code's rounding of the exact one (Float64), every variant this CPU runs and portable alike",
          arguments: [1, 5, 100, 384, 1_536])
    func nodeRank(dimension d: Int) {
        let slots = 32
        let block = UnsafeMutableRawPointer.allocate(byteCount: lodestone_qg_block_bytes(d, slots), alignment: 64)
        defer { block.deallocate() }
        for (seed, scale) in [(UInt64(1), Float(1)), (2, 0.05), (3, 40)] {
            lodestone_qg_clear_block(block, d, slots)
            let x = Fixtures.randomVectors(count: 1, dimension: d, seed: seed, scale: -1...1).map { $0 * scale }
            let q = Fixtures.randomVectors(count: 1, dimension: d, seed: seed + 10, scale: -1...1)
            lodestone_qg_encode_node(block, d, slots, x)
            // Each component is within half a step (max|x| / 127 / 2) of its
            // code, so <q, x> is within that times |q|_1 (plus float rounding).
            let step = Double(x.map { abs($0) }.max()!) / 127
            let l1 = q.reduce(0.0) { $0 + Double(abs($1)) }
            let dot = zip(q, x).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let qq = q.reduce(0.0) { $0 + Double($1) * Double($1) }, xx = x.reduce(0.0) { $0 + Double($1) * Double($1) }
            for euclidean in [false, true] {
                let exact = euclidean ? qq + xx - 2 * dot : -dot
                let bound = (euclidean ? 2 : 1) * (step / 2 * l1) + 1e-5 * (abs(exact) + qq + xx + 1)
                let portable = NeighbourCodeKernels.portable.node_rank(block, d, slots, q, Float(qq), euclidean ? 1 : 0)
                for (name, kernels) in NeighbourCodeKernels.variants {
                    let fast = kernels.node_rank(block, d, slots, q, Float(qq), euclidean ? 1 : 0)
                    #expect(abs(Double(fast) - exact) <= bound, "\(name) d \(d) scale \(scale) euclidean \(euclidean): \(fast) vs \(exact) (± \(bound))")
                    #expect(abs(Double(fast) - Double(portable)) <= 1e-5 * (abs(exact) + qq + xx + 1), "\(name) \(fast), portable \(portable)")
                }
            }
        }
    }

    @Test("a format 1.1 segment opens: its blocks (kind 22, without the node's own code) are ignored and encoded again before the first search")
    func formatOnePointOne() throws {
        let s = try SegmentTests.smallSegment()
        var bytes = s.bytes
        func u32(_ at: Int) -> UInt32 { bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        func put(_ v: UInt32, _ at: Int) { for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        let directory = Int(bytes[32..<40].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }), entries = Int(u32(40))
        var relabelled = 0
        for i in 0..<entries where u32(directory + 64 * i) == SectionKind.hnswNeighbourCodes {
            put(SectionKind.hnswNeighbourCodes11, directory + 64 * i)
            relabelled += 1
        }
        #expect(relabelled == 1)
        // ... and in the chunk checksums' list (kind, chunk count, CRCs per section), whose CRC follows.
        for i in 0..<entries where u32(directory + 64 * i) == SectionKind.chunkChecksums {
            let entry = directory + 64 * i
            let start = Int(bytes[entry + 8..<entry + 16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            let length = Int(bytes[entry + 16..<entry + 24].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            var at = start
            while at < start + length {
                let chunks = Int(u32(at + 4))
                if u32(at) == SectionKind.hnswNeighbourCodes { put(SectionKind.hnswNeighbourCodes11, at) }
                at += 8 + 4 * chunks
            }
            put(bytes[start..<start + length].withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) }, entry + 32)
        }
        bytes[10] = 1  // minor version 1
        put(bytes[directory..<directory + 64 * entries].withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) }, 44)
        put(bytes[0..<252].withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) }, 252)
        let path = SegmentTests.temporaryPath("format-1.1.lodestone")
        try VectorFiles.writeFile(path, bytes)
        let old = try HNSWIndex.open(path: path)
        #expect(try SegmentInfo(path: path).formatVersion == "1.1")
        let codes = try #require(old.neighbourCodes)
        #expect(!codes.isReady)
        let current = try HNSWIndex.open(path: s.path)
        for row in 0..<20 {
            let q = Fixtures.randomVectors(count: 1, dimension: 8, seed: UInt64(100 + row))
            #expect(try old.search(q, k: 5, ef: 32) == current.search(q, k: 5, ef: 32))
        }
        #expect(codes.isReady)
        try Self.checkBlocksMirrorLinks(old)
        try old.verify()
    }

    /// Recall@10 of `index` on the first `count` queries against Float64 brute force over `base` (keys = rows).
    static func recall(_ index: HNSWIndex, base: [Float], keys: [UInt64], queries: Fixtures.Dataset, count: Int, ef: Int)
        throws -> Double
    {
        let d = index.dimension
        var hits = 0
        for qi in 0..<count {
            let q = queries.queries.row(qi)
            let truth = Set(Fixtures.bruteForce(base: base, dimension: d, query: q, metric: index.metric, k: 10).map { keys[$0.0] })
            let found = try index.search(q, k: 10, ef: ef)
            #expect(found.count == 10)
            hits += found.filter { truth.contains($0.key) }.count
        }
        return Double(hits) / Double(10 * count)
    }

    static let realQuantized: HNSWIndex = {
        let data = Fixtures.realData
        let index = try! HNSWIndex(dimension: data.base.dimension, metric: .cosine,
                                   parameters: HNSWParameters(m: 16, efConstruction: 100, traversal: .quantized))
        try! index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 }, threads: 2)
        return index
    }()

    @Test("finds the top 10 of real embeddings against Float64 brute force (recall ≥ 0.93 at ef 64, ≥ 0.98 at ef 200), with exact scores")
    func recallOnRealData() throws {
        let data = Fixtures.realData
        let index = Self.realQuantized
        let keys = (0..<UInt64(data.base.rows)).map { $0 }
        let low = try Self.recall(index, base: data.base.values, keys: keys, queries: data, count: 100, ef: 64)
        let high = try Self.recall(index, base: data.base.values, keys: keys, queries: data, count: 100, ef: 200)
        #expect(low >= 0.93, "recall@10 at ef 64: \(low)")
        #expect(high >= 0.98, "recall@10 at ef 200: \(high)")
        // Scores are exact (computed on float32 vectors), not estimates.
        let q = data.queries.row(7)
        let exact = Dictionary(uniqueKeysWithValues: Fixtures.bruteForce(base: data.base.values, dimension: data.base.dimension,
                                                                        query: q, metric: .cosine, k: 200).map { (UInt64($0.0), $0.1) })
        for hit in try index.search(q, k: 10, ef: 64) {
            let reference = try #require(exact[hit.key])
            #expect(abs(Double(hit.score) - reference) <= 1e-4)
        }
        // The walk computed one exact distance per node expanded, far
        // fewer than the exact walk scores at the same ef.
        let exactWalk = try HNSWIndex(dimension: data.base.dimension, metric: .cosine,
                                      parameters: HNSWParameters(m: 16, efConstruction: 100))
        try exactWalk.add(contentsOf: data.base.values, keys: keys, threads: 2)
        let plain = try Self.recall(exactWalk, base: data.base.values, keys: keys, queries: data, count: 100, ef: 64)
        #expect(low >= plain - 0.04, "quantized \(low) against exact walk \(plain) at ef 64")
    }

    @Test("the post-filtered walk of a quantized index is the quantized walk, keeping only passing results: recall ≥ 0.93 at ef 64 against Float64 brute force")
    func postFilteredQuantizedWalk() throws {
        let data = Fixtures.realData
        let index = Self.realQuantized
        var allowed = Bitset(capacity: data.base.rows)
        for key in 0..<data.base.rows where key % 2 == 0 { allowed.insert(key) }
        let keys = allowed.slots.map { UInt64($0) }
        let base = keys.flatMap { data.base.row(Int($0)) }
        let admission = FilterAdmission(index: index, keys: allowed, nodes: nil)
        let exactIndex = HNSWIndexTests.realIndex
        let exactAdmission = FilterAdmission(index: exactIndex, keys: allowed, nodes: nil)
        var hits = 0, distances = 0, exactDistances = 0
        for qi in 0..<100 {
            let q = data.queries.row(qi)
            let norm = q.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let (walked, exactWalk) = q.map { $0 / norm }.withUnsafeBufferPointer { p in
                (index.postFilteredWalk(p.baseAddress!, k: 10, ef: 64, admission: admission),
                 exactIndex.postFilteredWalk(p.baseAddress!, k: 10, ef: 64, admission: exactAdmission))
            }
            #expect(walked.results.count == 10 && walked.results.allSatisfy { $0.key % 2 == 0 })
            distances += walked.distances
            exactDistances += exactWalk.distances
            let truth = Set(Fixtures.bruteForce(base: base, dimension: data.base.dimension, query: q, metric: .cosine, k: 10)
                .map { keys[$0.0] })
            hits += walked.results.filter { truth.contains($0.key) }.count
        }
        #expect(Double(hits) / 1_000 >= 0.93, "recall@10 \(Double(hits) / 1_000)")
        // The quantized walk computes an exact distance per node it expands
        // (and per finalist); the exact walk, one per neighbour it scores.
        #expect(distances * 3 < exactDistances, "\(distances) exact distances against the exact walk's \(exactDistances)")
    }

    /// Mean layer-0 degree of the live nodes, after checking that each list
    /// holds distinct live nodes other than its own.
    static func meanLayerZeroDegree(_ index: HNSWIndex, below limit: Int = .max) -> Double {
        var total = 0, nodes = 0
        for id in 0..<UInt32(min(limit, index.nodeCount.load(ordering: .acquiring))) where index.state(id) == .live {
            let links = index.links(id, layer: 0)
            let held = (0..<index.m0).map { links[$0] }.prefix { $0 != HNSWIndex.noNode }
            #expect(Set(held).count == held.count && !held.contains(id), "node \(id): \(held)")
            #expect(held.allSatisfy { index.state($0) == .live }, "node \(id) links a node not live")
            total += held.count
            nodes += 1
        }
        return Double(total) / Double(max(nodes, 1))
    }

    @Test("the entry point's fill reads no stale spare candidates: a first batch into a fresh index links no node to itself")
    func entryPointFillsFromNothingStale() throws {
        let data = Fixtures.realData
        let d = data.base.dimension
        for traversal in [HNSWParameters.Traversal.quantized, .compact] {
            for trial in 0..<20 {
                let n = 1 + trial % 3
                // The insert's spare buffer is likely to reuse a block of its
                // size freed just before: fill one with (node 0, distance 0),
                // what made node 0, the entry point, link itself.
                let stale = UnsafeMutablePointer<SpareCandidate>.allocate(capacity: n * 32)
                stale.initialize(repeating: SpareCandidate(id: 0, distance: 0), count: n * 32)
                stale.deallocate()
                let index = try HNSWIndex(dimension: d, metric: .cosine,
                                          parameters: HNSWParameters(m: 16, efConstruction: 32, traversal: traversal))
                try index.add(contentsOf: Array(data.base.values[0..<(n * d)]), keys: (0..<UInt64(n)).map { $0 }, threads: 1)
                _ = Self.meanLayerZeroDegree(index)
            }
        }
    }

    @Test("inserts fill a quantized index's layer-0 lists past the heuristic's choice (distinct live nodes, blocks mirroring them); an exact or dot-product index keeps the heuristic's")
    func layerZeroFill() throws {
        let data = Fixtures.realData
        let n = min(4_000, data.base.rows)
        let values = Array(data.base.values[0..<(n * data.base.dimension)])
        let keys = (0..<UInt64(n)).map { $0 }
        func built(_ metric: Metric, _ traversal: HNSWParameters.Traversal) throws -> HNSWIndex {
            let index = try HNSWIndex(dimension: data.base.dimension, metric: metric,
                                      parameters: HNSWParameters(m: 16, efConstruction: 100, traversal: traversal))
            try index.add(contentsOf: values, keys: keys, threads: 2)
            return index
        }
        let quantized = try built(.cosine, .quantized)
        let filled = Self.meanLayerZeroDegree(quantized)
        let plain = Self.meanLayerZeroDegree(try built(.cosine, .exact))
        let dot = Self.meanLayerZeroDegree(try built(.dotProduct, .quantized))
        #expect(filled >= plain + 4 && filled <= Double(quantized.m0), "filled \(filled), heuristic only \(plain)")
        #expect(dot <= plain + 1, "dot product \(dot), heuristic only \(plain)")
        try Self.checkBlocksMirrorLinks(quantized)
        try quantized.verify()
    }

    @Test("lists filled by an earlier insert stay filled when later small batches link to them (refilled after the heuristic re-chooses a full list)")
    func refillAfterSmallBatches() throws {
        let data = Fixtures.realData
        let n = min(4_000, data.base.rows), d = data.base.dimension, first = n / 2
        func grown(_ traversal: HNSWParameters.Traversal) throws -> HNSWIndex {
            let index = try HNSWIndex(dimension: d, metric: .cosine,
                                      parameters: HNSWParameters(m: 16, efConstruction: 100, traversal: traversal))
            try index.add(contentsOf: Array(data.base.values[0..<(first * d)]), keys: (0..<UInt64(first)).map { $0 },
                          threads: 2)
            for start in stride(from: first, to: n, by: 50) {
                let end = min(n, start + 50)
                try index.add(contentsOf: Array(data.base.values[(start * d)..<(end * d)]),
                              keys: (UInt64(start)..<UInt64(end)).map { $0 }, threads: 2)
            }
            return index
        }
        let quantized = try grown(.quantized)
        // The first half's lists after the second half linked to them.
        let kept = Self.meanLayerZeroDegree(quantized, below: first)
        let plain = Self.meanLayerZeroDegree(try grown(.exact), below: first)
        #expect(kept >= plain + 4 && kept <= Double(quantized.m0), "refilled \(kept), heuristic only \(plain)")
        try Self.checkBlocksMirrorLinks(quantized)
        try quantized.verify()
    }

    /// Checks that every node's block holds its layer-0 links (as a set) and
    /// that each slot's code is what encoding it now gives.
    static func checkBlocksMirrorLinks(_ index: HNSWIndex) throws {
        let codes = try #require(index.neighbourCodes)
        #expect(codes.isReady)
        let d = index.dimension, slots = codes.slots
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: codes.blocks.stride, alignment: 64)
        defer { scratch.deallocate() }
        var checked = 0
        for id in 0..<UInt32(index.nodeCount.load(ordering: .acquiring)) where index.state(id) == .live {
            let links = index.links(id, layer: 0)
            let linked = Set((0..<index.m0).map { links[$0] }.filter { $0 != HNSWIndex.noNode })
            let block = codes.blocks.record(id)
            let ids = block.assumingMemoryBound(to: UInt32.self)
            let held = (0..<slots).map { ids[$0] }.filter { $0 != HNSWIndex.noNode }
            #expect(Set(held) == linked && held.count == linked.count, "node \(id): block \(held.sorted()) links \(linked.sorted())")
            // Re-encode each slot into a copy and compare bytes.
            scratch.copyMemory(from: block, byteCount: codes.blocks.stride)
            lodestone_qg_encode_node(scratch, d, slots, index.vector(id))
            for j in 0..<slots where ids[j] != HNSWIndex.noNode {
                lodestone_qg_encode(scratch, d, slots, j, ids[j], index.vector(ids[j]), index.vector(id), codes.euclidean ? 1 : 0)
            }
            #expect(memcmp(scratch, block, codes.blocks.stride) == 0, "node \(id)'s codes are stale")
            checked += 1
        }
        #expect(checked == index.count)
    }

    @Test("blocks follow inserts, removals with repair, purges and reused slots; recall holds and removed keys never return")
    func blocksFollowWrites() throws {
        let data = Fixtures.realData
        let d = data.base.dimension
        let n = min(3_000, data.base.rows - 600)
        let index = try HNSWIndex(dimension: d, metric: .euclidean,
                                  parameters: HNSWParameters(m: 8, efConstruction: 64, traversal: .quantized))
        try index.add(contentsOf: Array(data.base.values[0..<(n * d)]), keys: (0..<UInt64(n)).map { $0 }, threads: 2)
        try Self.checkBlocksMirrorLinks(index)
        // Removals (repairs), a purge, then new vectors into the freed slots.
        for key in UInt64(0)..<300 { index.remove(key: key) }
        index.compact()
        try index.add(contentsOf: Array(data.base.values[(n * d)..<((n + 600) * d)]),
                      keys: (UInt64(n)..<UInt64(n + 600)).map { $0 }, threads: 2)
        try Self.checkBlocksMirrorLinks(index)
        let keys = (300..<UInt64(n + 600)).map { $0 }
        let base = Array(data.base.values[(300 * d)..<((n + 600) * d)])
        let recall = try Self.recall(index, base: base, keys: keys, queries: data, count: 50, ef: 96)
        #expect(recall >= 0.9, "recall@10 after writes: \(recall)")
        for qi in 0..<20 {
            #expect(try index.search(data.queries.row(qi), k: 10, ef: 32).allSatisfy { $0.key >= 300 })
        }
    }

    @Test("the traversal and blocks are persisted (format 1.2): a reopened index uses them in place and answers as before; without them (a compacting persist) it encodes them first")
    func persistAndReopen() throws {
        let data = Fixtures.realData
        let index = Self.realQuantized
        let dir = Fixtures.temporaryDirectory("quantized-reopen")
        let path = dir + "/graph.seg"
        try index.persist(to: path)
        let reopened = try HNSWIndex.open(path: path)
        #expect(reopened.parameters.traversal == .quantized)
        let codes = try #require(reopened.neighbourCodes)
        #expect(codes.isReady && reopened.nodesLinked == 0)
        for qi in 0..<50 {
            let q = data.queries.row(qi)
            #expect(try reopened.search(q, k: 10, ef: 64) == index.search(q, k: 10, ef: 64))
        }
        try reopened.verify()  // the blocks' chunks check out
        // A compacting persist renumbers nodes and leaves the blocks out:
        // the reopened index encodes them before its first search.
        #expect(reopened.remove(key: 3))
        try reopened.persist(to: dir + "/compact.seg", compact: true)
        let compacted = try HNSWIndex.open(path: dir + "/compact.seg")
        let rebuilt = try #require(compacted.neighbourCodes)
        #expect(!rebuilt.isReady)
        var same = 0
        for qi in 0..<50 {
            let q = data.queries.row(qi)
            if try compacted.search(q, k: 10, ef: 64).map(\.key) == reopened.search(q, k: 10, ef: 64).map(\.key) { same += 1 }
        }
        #expect(rebuilt.isReady)
        // Rebuilt blocks hold the same neighbours, perhaps in other slots,
        // so ties may break differently; answers are otherwise the same.
        #expect(same >= 45, "\(same) of 50 answers equal after compacting")
        try Self.checkBlocksMirrorLinks(compacted)
        // The manifest's settings carry it too; settings without it are exact.
        let settings = VectorSettings(dimension: 4, metric: .cosine, parameters: HNSWParameters(traversal: .quantized), model: "m")
        var w = ByteWriter()
        settings.encode(into: &w)
        var r = ByteReader(w.bytes) { .corruptSegment(path: "", section: "", reason: "short") }
        #expect(try VectorSettings.decode(from: &r) { .corruptSegment(path: "", section: "manifest", reason: $0) } == settings)
        var old = ByteReader(Array(w.bytes.dropLast(8))) { .corruptSegment(path: "", section: "", reason: "short") }
        let decoded = try VectorSettings.decode(from: &old) { .corruptSegment(path: "", section: "manifest", reason: $0) }
        #expect(decoded.parameters.traversal == .exact)
    }
}

/// The neighbour-code kernel variants this CPU runs, by name, the portable
/// C kernels last (so a test over `variants` checks the reference too).
enum NeighbourCodeKernels {
    static let portable: lodestone_qg_kernels = {
        var k = lodestone_qg_kernels()
        lodestone_qg_kernels_portable(&k)
        return k
    }()

    static let variants: [(String, lodestone_qg_kernels)] = {
        let isas = [("avx2", LODESTONE_ISA_AVX2_FMA), ("avx512", LODESTONE_ISA_AVX512), ("neon", LODESTONE_ISA_NEON)]
        return isas.compactMap { name, isa -> (String, lodestone_qg_kernels)? in
            var k = lodestone_qg_kernels()
            return lodestone_qg_kernels_for(isa, &k) == 1 ? (name, k) : nil
        } + [("portable", portable)]
    }()
}
