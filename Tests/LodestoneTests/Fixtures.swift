import Foundation
#if canImport(CLodestoneTestReference)
import CLodestoneTestReference
#else
import CLodestoneToolsTestReference  // Tools/'s tests, which link this file
#endif
@_spi(LodestoneTools) @testable import Lodestone

/// Test data: the real pypi-minilm embeddings from ../shared when present,
/// and the committed sample in Data/ (always present).
enum Fixtures {
    /// The clone's root: the first folder above this file holding `Data/`
    /// (this file also serves Tools/'s tests, one level deeper).
    static let repositoryRoot: URL = {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Data/README.md").path) {
            precondition(dir.path != "/", "no Data/README.md above \(#filePath)")
            dir.deleteLastPathComponent()
        }
        return dir
    }()

    /// `../shared/data/pypi-minilm` beside the repository (or
    /// `$LODESTONE_SHARED_DATA`; `none` for the sample only), if it exists.
    static let sharedData: URL? = {
        // LODESTONE_SHARED_DATA=none: the sample only, as in a fresh clone.
        if ProcessInfo.processInfo.environment["LODESTONE_SHARED_DATA"] == "none" { return nil }
        let candidates = [
            ProcessInfo.processInfo.environment["LODESTONE_SHARED_DATA"].map { URL(fileURLWithPath: $0) },
            repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data/pypi-minilm"),
        ].compactMap { $0 }
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("small_base.fvecs").path) }
    }()

    static let sampleData = repositoryRoot.appendingPathComponent("Data")

    /// A base set, queries and their exact top-100 (row numbers).
    struct Dataset {
        let name: String
        let base: Matrix<Float>
        let queries: Matrix<Float>
        let truth: Matrix<Int32>
    }

    /// The 10,000-vector slice of pypi-minilm when ../shared is there,
    /// else the 2,000-vector sample in Data/.
    static let realData: Dataset = {
        if let dir = sharedData {
            return try! Dataset(
                name: "pypi-minilm small (10,000 x 384)",
                base: VectorFiles.readFloats(dir.appendingPathComponent("small_base.fvecs").path),
                queries: VectorFiles.readFloats(dir.appendingPathComponent("small_query.fvecs").path),
                truth: VectorFiles.readInts(dir.appendingPathComponent("small_groundtruth.ivecs").path))
        }
        return sample
    }()

    /// The metadata of ``realData``'s base rows (its `id` field removed).
    static let realMetadata: [(id: String, metadata: Metadata)] = {
        let url = sharedData?.appendingPathComponent("small_base_meta.jsonl")
            ?? sampleData.appendingPathComponent("base_meta.jsonl")
        let lines = try! String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        return lines.map { line in
            var m = try! Metadata.from(json: JSONValue.parse(String(line)))
            guard case let .string(id)? = m.removeValue(forKey: "id") else { fatalError("no id in \(line)") }
            return (id, m)
        }
    }()

    /// ``realData``'s base rows as records (id and metadata from the data).
    static let realRecords: [Record] = (0..<realData.base.rows).map { i in
        Record(id: realMetadata[i].id, values: realData.base.row(i), metadata: realMetadata[i].metadata)
    }

    /// A fresh empty directory under the temporary directory.
    /// A data file's path: the pypi-minilm slice's `small` file when the
    /// shared data is beside the repository, else the Data/ sample's `sample`.
    static func dataFile(small: String, sample: String) -> String {
        if let dir = sharedData { return dir.appendingPathComponent(small).path }
        return sampleData.appendingPathComponent(sample).path
    }

    /// A fresh path under the temporary directory, not created (for a
    /// durable index or a child process to create).
    static func freshPath(_ label: String) -> String {
        NSTemporaryDirectory() + "lodestone-\(label)-\(UUID().uuidString)"
    }

    static func temporaryDirectory(_ label: String) -> String {
        let path = NSTemporaryDirectory() + "lodestone-\(label)-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The committed sample: 2,000 base vectors, 100 queries.
    static let sample: Dataset = try! Dataset(
        name: "Data/ sample (2,000 x 384)",
        base: VectorFiles.readFloats(sampleData.appendingPathComponent("base.fvecs").path),
        queries: VectorFiles.readFloats(sampleData.appendingPathComponent("query.fvecs").path),
        truth: VectorFiles.readInts(sampleData.appendingPathComponent("groundtruth.ivecs").path))

    /// A repeatable generator, so failures reproduce.
    typealias SeededGenerator = SplitMix64

    static func randomVectors(count: Int, dimension: Int, seed: UInt64, scale: ClosedRange<Float> = 1...1) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        var out = [Float]()
        out.reserveCapacity(count * dimension)
        for _ in 0..<count {
            let s = Float.random(in: scale, using: &rng)
            for _ in 0..<dimension { out.append(Float.random(in: -1...1, using: &rng) * s) }
        }
        return out
    }

    /// Exact top-k in Float64: ranks by similarity (cosine, dot) or squared
    /// L2 distance, ties to the smaller row. Returns (row, score) best first.
    static func bruteForce(base: [Float], dimension d: Int, query: [Float], metric: Metric, k: Int) -> [(Int, Double)] {
        let n = base.count / d
        let scores = referenceScores(base: base, rows: n, dimension: d, query: query, metric: metric)
        var scored = [(Int, Double)]()
        scored.reserveCapacity(n)
        for r in 0..<n { scored.append((r, scores[r])) }
        let sign: Double = metric == .euclidean ? 1 : -1
        func better(_ a: (Int, Double), _ b: (Int, Double)) -> Bool {
            let x = sign * a.1, y = sign * b.1
            return x < y || (x == y && a.0 < b.0)
        }
        return Array(scored.sorted(by: better).prefix(k))
    }

    /// Every row's Float64 score against `query`: cosine similarity (both
    /// normalised in Float64), the dot product, or the squared L2 distance,
    /// computed in C (Tests/CTestReference: quick in a debug build).
    static func referenceScores(base: [Float], rows n: Int, dimension d: Int, query: [Float], metric: Metric) -> [Double] {
        let code: Int32 = metric == .cosine ? 0 : metric == .dotProduct ? 1 : 2
        return [Double](unsafeUninitializedCapacity: n) { out, count in
            base.withUnsafeBufferPointer { b in
                query.withUnsafeBufferPointer { q in
                    lodestone_test_reference_scores(b.baseAddress!, n, d, q.baseAddress!, code, out.baseAddress!)
                }
            }
            count = n
        }
    }
}
