import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

// Where `lodestone knn` reads its queries, and what it searches.

/// Queries, read a block at a time in order.
protocol QuerySource {
    var dimension: Int { get }
    /// How many queries there are, when known before reading them all
    /// (JSON Lines: not).
    var count: Int? { get }
    /// The next up to `n` queries from query number `start` (the caller
    /// asks in order; after a restart it may start past 0): row-major
    /// values and, when the queries have them, their ids.
    mutating func read(start: Int, n: Int) throws -> (rows: [Float], ids: [String]?)
}

/// `.fvecs` / `.npy`, by pread.
struct VectorFileSource: QuerySource {
    let reader: VectorFileReader
    var dimension: Int { reader.dimension }
    var count: Int? { reader.count }

    mutating func read(start: Int, n: Int) throws -> (rows: [Float], ids: [String]?) {
        let end = min(reader.count, start + n)
        return (start < end ? try reader.rows(start..<end) : [], nil)
    }
}

/// A two-dimensional HDF5 dataset (ann-benchmarks' `test`), by hyperslab.
struct HDF5Source: QuerySource {
    let file: HDF5File
    let dataset: String
    let dimension: Int
    let rows: Int
    var count: Int? { rows }

    init(path: String, dataset: String) throws {
        file = HDF5File(path: path)
        self.dataset = dataset
        (rows, dimension) = try file.shape(dataset)
    }

    mutating func read(start: Int, n: Int) throws -> (rows: [Float], ids: [String]?) {
        let end = min(rows, start + n)
        return (start < end ? try file.floatRows(dataset, start..<end, dimension: dimension) : [], nil)
    }
}

/// JSON Lines: each line a JSON array of numbers, or an object with
/// `values` (and optionally `id`); blank lines are skipped.
struct JSONLinesSource: QuerySource {
    let path: String
    let dimension: Int
    var count: Int? { nil }
    private let reader: GzipLineReader
    private var next = 0  // query number of the next line read

    init(path: String) throws {
        self.path = path
        reader = try GzipLineReader(path: path)
        // The first query gives the dimension; reopen to read it again.
        let probe = try GzipLineReader(path: path)
        var d: Int? = nil
        while d == nil, let line = try probe.nextLine() { d = try Self.parse(line, path: path, number: probe.lineNumber)?.0.count }
        guard let d else { throw CLIError("\(path): holds no query") }
        dimension = d
    }

    static func parse(_ line: [UInt8], path: String, number: Int) throws -> ([Float], String?)? {
        if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { return nil }
        let object: JSONValue
        do {
            object = try JSONValue.parse(bytes: line)
        } catch {
            throw CLIError("\(path):\(number): not JSON (\(error))")
        }
        var id: String? = nil
        var values: JSONValue? = object
        if case .object = object {
            values = object["values"] ?? object["vector"]
            if let s = object["id"]?.stringValue {
                id = s
            } else if let n = object["id"], case .number = n {
                id = n.jsonText  // 7 -> "7", 1.5 -> "1.5"
            }
        }
        let numbers = values?.arrayValue?.compactMap(\.numberValue) ?? []
        guard !numbers.isEmpty, numbers.count == values?.arrayValue?.count else {
            throw CLIError("\(path):\(number): expected a JSON array of numbers, or an object with \"values\"")
        }
        return (numbers.map { Float($0) }, id)
    }

    mutating func read(start: Int, n: Int) throws -> (rows: [Float], ids: [String]?) {
        var rows: [Float] = [], ids: [String] = []
        var anyID = false
        var taken = 0
        while taken < n, let line = try reader.nextLine() {
            guard let (v, id) = try Self.parse(line, path: path, number: reader.lineNumber) else { continue }
            guard v.count == dimension else {
                throw CLIError("\(path):\(reader.lineNumber): \(v.count) components; the first query has \(dimension)")
            }
            defer { next += 1 }
            if next < start { continue }  // resuming: skip what was done
            rows += v
            ids.append(id ?? String(next))
            anyID = anyID || id != nil
            taken += 1
        }
        return (rows, anyID ? ids : nil)
    }
}

/// `--self` on a database index: every record of the namespace, in id
/// order, is a query (its own id excluded from its results).
struct IndexRecordsSource: QuerySource {
    let index: Index
    let namespace: String
    let ids: [String]
    var dimension: Int { index.dimension }
    var count: Int? { ids.count }

    init(index: Index, namespace: String) throws {
        self.index = index
        self.namespace = namespace
        var all: [String] = [], token: String? = nil
        repeat {
            let page = try index.listIDs(namespace: namespace, limit: 100_000, paginationToken: token)
            all += page.ids
            token = page.nextToken
        } while token != nil
        ids = all
    }

    mutating func read(start: Int, n: Int) throws -> (rows: [Float], ids: [String]?) {
        let chunk = Array(ids[min(start, ids.count)..<min(ids.count, start + n)])
        let records = try index.fetch(ids: chunk, namespace: namespace)
        var rows: [Float] = []
        rows.reserveCapacity(chunk.count * dimension)
        for id in chunk {
            guard let r = records[id] else { throw CLIError("record \"\(id)\" was deleted while the job ran") }
            rows += r.values
        }
        return (rows, chunk)
    }
}

/// One block's results: per query, its neighbours' ids (strings, or row
/// numbers of a base file) and scores, best first.
struct KnnResults {
    var stringIDs: [[String]]?
    var rowIDs: [[Int64]]?
    var scores: [[Float]]

    var count: Int { scores.count }
}

/// What the queries are searched against.
protocol KnnTarget {
    var dimension: Int { get }
    /// Whether neighbours are named by row numbers (a base file) rather
    /// than record ids.
    var hasRowIDs: Bool { get }
    func search(_ rows: [Float], count: Int, k: Int, threads: Int) throws -> KnnResults
}

/// A database index: `Index.queryBatch` (BLAS on a flat index, parallel
/// graph searches on HNSW; filter and namespace as given).
struct IndexTarget: KnnTarget {
    let index: Index
    let namespace: String
    let filter: Filter?
    let ef: Int?
    var dimension: Int { index.dimension }
    var hasRowIDs: Bool { false }

    func search(_ rows: [Float], count: Int, k: Int, threads: Int) throws -> KnnResults {
        let matches = try index.queryBatch(rows: rows, topK: k, namespace: namespace, filter: filter, ef: ef,
                                           threads: threads)
        return KnnResults(stringIDs: matches.map { $0.map(\.id) }, rowIDs: nil, scores: matches.map { $0.map(\.score) })
    }
}

/// A base vector file searched exactly: a flat index over its rows (keys
/// are row numbers), searched by BLAS.
struct BaseFileTarget: KnnTarget {
    let flat: FlatIndex
    var dimension: Int { flat.dimension }
    var hasRowIDs: Bool { true }

    init(path: String, metric: Metric, threads: Int) throws {
        let reader = try VectorFileReader(path: path)
        var flat = try FlatIndex(dimension: reader.dimension, metric: metric)
        let block = 65_536
        var start = 0
        while start < reader.count {
            let end = min(reader.count, start + block)
            try flat.add(contentsOf: try reader.rows(start..<end), keys: (start..<end).map { UInt64($0) })
            start = end
        }
        self.flat = flat
    }

    func search(_ rows: [Float], count: Int, k: Int, threads: Int) throws -> KnnResults {
        let results = try flat.search(batch: rows, k: k, threads: threads)
        return KnnResults(stringIDs: nil, rowIDs: results.map { $0.map { Int64($0.key) } },
                          scores: results.map { $0.map(\.score) })
    }
}
