import CLodestoneKernels
import Dispatch
import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Segments: persist and open")
struct SegmentTests {
    static func temporaryPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lodestone-seg-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    static func results(_ index: HNSWIndex, _ queries: Matrix<Float>, ef: Int = 32) throws -> [[Neighbor]] {
        try (0..<queries.rows).map { try index.search(queries.row($0), k: 10, ef: ef) }
    }

    @Test("CRC-32C matches the standard check value and the portable table")
    func crc() {
        let check = Array("123456789".utf8)
        #expect(check.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) } == 0xE306_9283)
        var rng = Fixtures.SeededGenerator(seed: 4)
        for n in [0, 1, 7, 8, 9, 63, 64, 1000] {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let fast = bytes.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) }
            let slow = bytes.withUnsafeBytes { lodestone_crc32c_portable(0, $0.baseAddress, $0.count) }
            #expect(fast == slow)
        }
    }

    @Test("persist, open: identical results, nothing re-linked, still writable")
    func roundTrip() throws {
        let data = Fixtures.realData
        let original = HNSWIndexTests.realIndex
        let path = Self.temporaryPath("index.lodestone")
        try original.persist(to: path)
        let opened = try HNSWIndex.open(path: path)
        #expect(opened.linkedNodes.load(ordering: .relaxed) == 0, "opening must not re-add vectors")
        #expect(opened.count == original.count && opened.dimension == original.dimension)
        #expect(opened.metric == original.metric && opened.parameters == original.parameters)
        #expect(try Self.results(opened, data.queries) == Self.results(original, data.queries))
        #expect(opened.vector(forKey: 17) == original.vector(forKey: 17))

        // Writable: add, replace and remove on top of the mapped segment.
        let extra = Fixtures.randomVectors(count: 50, dimension: data.base.dimension, seed: 3)
        try opened.add(contentsOf: extra, keys: (0..<50).map { 1_000_000 + UInt64($0) }, threads: 2)
        try opened.replace(data.base.row(1), key: 5)
        #expect(opened.remove(key: 6))
        let probe = Array(extra[0..<data.base.dimension])
        #expect(try opened.search(probe, k: 1, ef: 32).first?.key == 1_000_000)
        #expect(try opened.search(data.base.row(1), k: 2, ef: 32).map(\.key).contains(5))
        // The file did not change: opening it again gives the original.
        let again = try HNSWIndex.open(path: path)
        #expect(again.count == original.count && again.contains(key: 6) && !again.contains(key: 1_000_000))

        // Persisting the changed index and reopening keeps the changes.
        let second = Self.temporaryPath("second.lodestone")
        try opened.persist(to: second)
        let reopened = try HNSWIndex.open(path: second)
        #expect(reopened.count == opened.count && !reopened.contains(key: 6) && reopened.contains(key: 1_000_049))
        #expect(try Self.results(reopened, data.queries) == Self.results(opened, data.queries))
        #expect(reopened.removedSlots == opened.removedSlots)
    }

    @Test("concurrent first touches of mapped chunks while a writer adds: no false corruption, verify passes")
    func concurrentFirstTouch() throws {
        let data = Fixtures.realData
        let path = Self.temporaryPath("touch.lodestone")
        try HNSWIndexTests.realIndex.persist(to: path)
        for _ in 0..<3 {
            let opened = try HNSWIndex.open(path: path)
            let extra = Fixtures.randomVectors(count: 200, dimension: data.base.dimension, seed: 11)
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                if worker == 0 {
                    try! opened.add(contentsOf: extra, keys: (0..<200).map { 5_000_000 + UInt64($0) })
                } else {
                    for qi in stride(from: worker, to: data.queries.rows, by: 3) {
                        _ = try! opened.search(data.queries.row(qi), k: 10, ef: 32)
                    }
                }
            }
            try opened.verify()
            #expect(opened.count == HNSWIndexTests.realIndex.count + 200)
        }
    }

    @Test("a compacting persist drops removed rows, remaps links, and answers like the index it came from")
    func compactingPersist() throws {
        let data = Fixtures.sample
        let index = try HNSWIndex(dimension: 384, metric: .cosine, parameters: HNSWParameters(m: 8, efConstruction: 48))
        try index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 }, threads: 2)
        for key in stride(from: 0, to: 2000, by: 7) { index.remove(key: UInt64(key)) }
        try index.replace(data.base.row(1), key: 3)
        let plain = Self.temporaryPath("plain.lodestone"), compacted = Self.temporaryPath("compacted.lodestone")
        try index.persist(to: plain)
        try index.persist(to: compacted, compact: true)
        #expect(index.removedSlots > 0, "this instance keeps its numbering and its free slots")
        let opened = try HNSWIndex.open(path: compacted)
        try opened.verify()
        #expect(opened.count == index.count && opened.removedSlots == 0)
        #expect(try SegmentInfo(path: compacted).fileBytes < SegmentInfo(path: plain).fileBytes)
        #expect(try SegmentInfo(path: compacted).sections.first { $0.name == "vectors" }?.records == index.count)
        for qi in 0..<data.queries.rows {
            let q = data.queries.row(qi)
            #expect(try opened.search(q, k: 10, ef: 32) == index.search(q, k: 10, ef: 32), "query \(qi)")
        }
        #expect(!opened.contains(key: 7) && opened.vector(forKey: 3) == index.vector(forKey: 3))
        // Still writable, and a second compaction of a clean index is a plain persist.
        try opened.add(data.base.row(7), key: 7)
        #expect(try opened.search(data.base.row(7), k: 1).first?.key == 7)
    }

    /// A small persisted index, its bytes and its section directory.
    /// A small HNSW segment with every section (the quantized traversal's
    /// neighbour codes included) and removed nodes.
    static func smallSegment() throws -> (path: String, bytes: [UInt8], entries: [SectionEntry]) {
        let index = try HNSWIndex(dimension: 8, metric: .euclidean,
                                  parameters: HNSWParameters(m: 4, efConstruction: 16, traversal: .quantized),
                                  embeddingModel: "test-model")
        try index.add(contentsOf: Fixtures.randomVectors(count: 300, dimension: 8, seed: 2),
                      keys: (0..<300).map { UInt64($0) })
        for key in 0..<20 { index.remove(key: UInt64(key * 7)) }
        let path = temporaryPath("small.lodestone")
        try index.persist(to: path)
        let entries = try MappedSegment(path: path).entries
        return (path, try VectorFiles.readFile(path), entries)
    }

    static func openError(_ bytes: [UInt8]) -> LodestoneError? {
        let path = temporaryPath("damaged.lodestone")
        try! VectorFiles.writeFile(path, bytes)
        do {
            let index = try HNSWIndex.open(path: path)
            try index.verify()
            _ = try index.search([Float](repeating: 0.5, count: 8), k: 5)
            return nil
        } catch {
            return error
        }
    }

    @Test("a damaged vector chunk makes the first search that touches it throw, without verify()")
    func lazyDetection() throws {
        let s = try Self.smallSegment()
        let vectors = try #require(s.entries.first { $0.name == "vectors" })
        var damaged = s.bytes
        damaged[vectors.offset + 3] ^= 0x10
        let path = Self.temporaryPath("lazy.lodestone")
        try VectorFiles.writeFile(path, damaged)
        let index = try HNSWIndex.open(path: path)  // opening reads no vector chunk
        #expect {
            _ = try index.search([Float](repeating: 0.5, count: 8), k: 5)
        } throws: { error in
            guard case let .corruptSegment(_, section, reason)? = error as? LodestoneError else { return false }
            return section == "vectors" && reason.contains("checksum")
        }
    }

    @Test("SegmentInfo lists the header and every section")
    func inspect() throws {
        let s = try Self.smallSegment()
        let info = try SegmentInfo(path: s.path)
        #expect(info.formatVersion == "1.4" && info.indexKind == "hnsw" && info.embeddingModel == "test-model")
        #expect(info.fileBytes == s.bytes.count)
        let names = Set(info.sections.map(\.name))
        #expect(names.isSuperset(of: ["parameters", "vectors", "keys", "states", "hnsw.links0", "hnsw.levels",
                                      "hnsw.upper-start", "hnsw.upper-links", "free", "hnsw.tombstones",
                                      "chunk-checksums"]))
        let vectors = try #require(info.sections.first { $0.name == "vectors" })
        #expect(vectors.records == 300 && vectors.stride == 64 && vectors.codec == "raw")
        let tombstones = try #require(info.sections.first { $0.name == "hnsw.tombstones" })
        #expect(tombstones.codec == "lz4" && tombstones.rawBytes == tombstones.records * 4)
    }

    @Test("the embedding model is recorded in the header")
    func model() throws {
        let s = try Self.smallSegment()
        #expect(try HNSWIndex.open(path: s.path).embeddingModel == "test-model")
        #expect(try MappedSegment(path: s.path).embeddingModel == "test-model")
    }

    @Test("a flipped byte in the header, the directory or any section is a typed error naming it")
    func flippedBytes() throws {
        let s = try Self.smallSegment()
        var places: [(String, Int)] = [("header", 20), ("header", 100), ("header", 252)]
        let dirOffset = Int(s.bytes[32]) | Int(s.bytes[33]) << 8 | Int(s.bytes[34]) << 16
        places.append(("directory", dirOffset + 5))
        for e in s.entries where e.storedLength > 0 {
            places.append((e.name, e.offset))
            places.append((e.name, e.offset + e.storedLength - 1))
        }
        for (section, at) in places {
            var damaged = s.bytes
            damaged[at] ^= 0x40
            let error = Self.openError(damaged)
            guard case let .corruptSegment(_, named, _)? = error else {
                Issue.record("flip at \(at) (\(section)): \(String(describing: error))")
                continue
            }
            #expect(named == section, "flip at \(at): expected \(section), got \(named)")
        }
        print("segment corruption test: \(places.count) flipped-byte variants, each a typed error naming its section")
    }

    @Test("truncation anywhere is a typed error, never a crash")
    func truncation() throws {
        let s = try Self.smallSegment()
        var cuts = [0, 1, 100, 255, 4095, 4096, s.bytes.count - 1]
        for e in s.entries { cuts += [e.offset, e.offset + e.storedLength / 2] }
        let variants = Set(cuts).filter { $0 < s.bytes.count }
        for cut in variants {
            let error = Self.openError(Array(s.bytes[0..<cut]))
            guard case .corruptSegment? = error else {
                Issue.record("cut at \(cut): \(String(describing: error))")
                continue
            }
        }
        print("segment truncation test: \(variants.count) truncated variants, each a typed error")
    }

    @Test("a newer major version is refused with a clear error; garbage is not a segment")
    func versions() throws {
        let s = try Self.smallSegment()
        var newer = s.bytes
        newer[8] = 2
        guard case .unsupportedFormatVersion(_, 2, 1)? = Self.openError(newer) else {
            Issue.record("a version-2 file was not refused as a newer version")
            return
        }
        var garbage = s.bytes
        garbage[0] = UInt8(ascii: "X")
        guard case let .corruptSegment(_, section, reason)? = Self.openError(garbage) else {
            Issue.record("garbage opened")
            return
        }
        #expect(section == "header" && reason.contains("magic"))
    }

    @Test("a flat index persists and opens with identical single and batch results, and stays writable")
    func flatRoundTrip() throws {
        let data = Fixtures.realData
        let original = try FlatIndexTests.build(data)
        let path = Self.temporaryPath("flat.lodestone")
        try original.persist(to: path, embeddingModel: "all-MiniLM-L6-v2")
        var opened = try FlatIndex.open(path: path)
        #expect(opened.count == original.count && opened.keys == original.keys)
        #expect(try SegmentInfo(path: path).indexKind == "flat")
        for qi in 0..<20 {
            #expect(try opened.search(data.queries.row(qi), k: 10) == original.search(data.queries.row(qi), k: 10))
        }
        #expect(try opened.search(batch: data.queries.values, k: 10) == original.search(batch: data.queries.values, k: 10))
        try opened.replace(data.base.row(0), key: 1)
        opened.remove(key: 2)
        try opened.add(data.base.row(3), key: 99_999)
        #expect(opened.vector(forKey: 1) == original.vector(forKey: 0) && !opened.contains(key: 2))
        let again = try FlatIndex.open(path: path)
        #expect(again.vector(forKey: 1) == original.vector(forKey: 1) && again.contains(key: 2), "the file must not change")

        var damaged = try VectorFiles.readFile(path)
        let vectors = try #require(try SegmentInfo(path: path).sections.first { $0.name == "vectors" })
        damaged[vectors.offset + 100] ^= 2
        try VectorFiles.writeFile(path, damaged)
        #expect {
            _ = try FlatIndex.open(path: path)
        } throws: { error in
            guard case let .corruptSegment(_, section, _)? = error as? LodestoneError else { return false }
            return section == "vectors"
        }
    }

    @Test("opening a missing file is an io error")
    func missing() {
        #expect(throws: LodestoneError.self) { _ = try HNSWIndex.open(path: "/nonexistent/dir/x.lodestone") }
    }
}
