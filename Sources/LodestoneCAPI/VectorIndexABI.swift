// lds_vindex: HNSW and flat indexes with integer keys (lodestone.h,
// "Vector indexes with integer keys").
import Lodestone

/// The object behind an `lds_vindex`: one of the two indexes. The graph
/// index is safe for readers during a write by itself; the flat index is
/// a value, so a lock guards it.
final class VectorIndexBox {
    enum Engine {
        case hnsw(HNSWIndex)
        case flat(FlatIndex)
    }

    private let hnsw: HNSWIndex?
    private var flat: FlatIndex?  // guarded by `lock`
    private let lock = ReadWriteLock()
    let dimension: Int
    let metric: Metric

    init(_ engine: Engine) {
        switch engine {
        case let .hnsw(index): hnsw = index; flat = nil; dimension = index.dimension; metric = index.metric
        case let .flat(index): hnsw = nil; flat = index; dimension = index.dimension; metric = index.metric
        }
    }

    var isHNSW: Bool { hnsw != nil }

    /// Runs `body` on the index for reading.
    func read<T>(_ body: (Engine) throws(LodestoneError) -> T) throws(LodestoneError) -> T {
        if let hnsw { return try body(.hnsw(hnsw)) }
        return try lock.reading { () throws(LodestoneError) -> T in try body(.flat(flat!)) }
    }

    /// Runs `hnsw` on the graph index, or `flat` on the flat index (in
    /// place, under the write lock).
    func write<T>(hnsw hnswBody: (HNSWIndex) throws(LodestoneError) -> T,
                  flat flatBody: (inout FlatIndex) throws(LodestoneError) -> T) throws(LodestoneError) -> T {
        if let hnsw { return try hnswBody(hnsw) }
        return try lock.writing { () throws(LodestoneError) -> T in try flatBody(&flat!) }
    }

    var count: Int {
        (try? read { engine -> Int in
            switch engine {
            case let .hnsw(i): return i.count
            case let .flat(i): return i.count
            }
        }) ?? 0
    }
}

private func box(_ handle: OpaquePointer?) throws(LodestoneError) -> VectorIndexBox {
    try object(handle, VectorIndexBox.self, name: "index")
}

private func checkDimension(_ dimension: Int64) throws(LodestoneError) -> Int {
    try Check.count(dimension, "dimension", atLeast: 1, atMost: 65_536)
}

@_cdecl("lds_vindex_new_flat")
public func lds_vindex_new_flat(_ dimension: Int64, _ metric: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let out = try Check.pointer(out, "out")
        let index = try FlatIndex(dimension: try checkDimension(dimension), metric: try Check.metric(metric))
        out.pointee = retain(VectorIndexBox(.flat(index)))
    }
}

@_cdecl("lds_vindex_new_hnsw")
public func lds_vindex_new_hnsw(_ dimension: Int64, _ metric: Int32, _ m: Int64, _ efConstruction: Int64,
                                _ efSearch: Int64, _ seed: UInt64, _ traversal: Int32,
                                _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let out = try Check.pointer(out, "out")
        let parameters = HNSWParameters(m: try Check.count(m, "m", atLeast: 2, atMost: 128),
                                        efConstruction: try Check.count(efConstruction, "ef_construction", atLeast: 1),
                                        efSearch: try Check.count(efSearch, "ef_search", atLeast: 1), seed: seed,
                                        traversal: try Check.traversal(traversal))
        let index = try HNSWIndex(dimension: try checkDimension(dimension), metric: try Check.metric(metric),
                                  parameters: parameters)
        out.pointee = retain(VectorIndexBox(.hnsw(index)))
    }
}

@_cdecl("lds_vindex_open")
public func lds_vindex_open(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                            _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let out = try Check.pointer(out, "out")
        let path = try Check.string(path, "path")
        let kind = try SegmentInfo(path: path).indexKind
        let engine: VectorIndexBox.Engine = kind == "flat" ? .flat(try FlatIndex.open(path: path))
                                                           : .hnsw(try HNSWIndex.open(path: path))
        out.pointee = retain(VectorIndexBox(engine))
    }
}

@_cdecl("lds_vindex_free")
public func lds_vindex_free(_ index: OpaquePointer?) { release(index) }

/// The rows and keys of an add or upsert, checked.
private func batch(_ index: VectorIndexBox, _ vectors: UnsafePointer<Float>?, _ keys: UnsafePointer<UInt64>?, _ n: Int64)
    throws(LodestoneError) -> (rows: [Float], keys: [UInt64])
{
    let n = try Check.count(n, "n", atMost: Int64(Int32.max))
    let rows = try Check.floats(vectors, count: try Check.product(n, index.dimension, "vectors"), "vectors")
    if n == 0 { return ([], []) }
    return (rows, Array(UnsafeBufferPointer(start: try Check.pointer(keys, "keys"), count: n)))
}

/// Adds (`replace` false) or upserts a checked batch.
private func store(_ handle: OpaquePointer?, _ vectors: UnsafePointer<Float>?, _ keys: UnsafePointer<UInt64>?, _ n: Int64,
                   _ threads: Int32, replace: Bool) throws(LodestoneError) {
    let index = try box(handle)
    let threads = try Check.threads(threads)
    let (rows, keys) = try batch(index, vectors, keys, n)
    if keys.isEmpty { return }
    try index.write(hnsw: { (i: HNSWIndex) throws(LodestoneError) in
        if replace { try i.upsert(contentsOf: rows, keys: keys, threads: threads) }
        else { try i.add(contentsOf: rows, keys: keys, threads: threads) }
    }, flat: { (i: inout FlatIndex) throws(LodestoneError) in
        if replace { try i.upsert(contentsOf: rows, keys: keys) } else { try i.add(contentsOf: rows, keys: keys) }
    })
}

@_cdecl("lds_vindex_add")
public func lds_vindex_add(_ handle: OpaquePointer?, _ vectors: UnsafePointer<Float>?, _ keys: UnsafePointer<UInt64>?,
                           _ n: Int64, _ threads: Int32, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in try store(handle, vectors, keys, n, threads, replace: false) }
}

@_cdecl("lds_vindex_upsert")
public func lds_vindex_upsert(_ handle: OpaquePointer?, _ vectors: UnsafePointer<Float>?, _ keys: UnsafePointer<UInt64>?,
                              _ n: Int64, _ threads: Int32, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in try store(handle, vectors, keys, n, threads, replace: true) }
}

@_cdecl("lds_vindex_remove")
public func lds_vindex_remove(_ handle: OpaquePointer?, _ keys: UnsafePointer<UInt64>?, _ n: Int64,
                              _ removed: UnsafeMutablePointer<Int64>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try box(handle)
        let n = try Check.count(n, "n", atMost: Int64(Int32.max))
        let keys = n == 0 ? [] : Array(UnsafeBufferPointer(start: try Check.pointer(keys, "keys"), count: n))
        let count = try index.write(hnsw: { i in keys.reduce(0) { $0 + (i.remove(key: $1) ? 1 : 0) } },
                                flat: { (i: inout FlatIndex) in keys.reduce(0) { $0 + (i.remove(key: $1) ? 1 : 0) } })
        removed?.pointee = Int64(count)
    }
}

/// Writes `results` (one list per query) into the caller's `nq * k` arrays.
private func write(_ results: [[Neighbor]], k: Int, keys: UnsafeMutablePointer<UInt64>, scores: UnsafeMutablePointer<Float>,
                   counts: UnsafeMutablePointer<Int32>) {
    for (q, list) in results.enumerated() {
        counts[q] = Int32(list.count)
        let base = q * k
        for (j, n) in list.enumerated() {
            keys[base + j] = n.key
            scores[base + j] = n.score
        }
        for j in list.count..<k {
            keys[base + j] = .max
            scores[base + j] = .nan
        }
    }
}

/// The shared body of the two searches.
private func search(_ handle: OpaquePointer?, _ queries: UnsafePointer<Float>?, _ nq: Int64, _ k: Int64, _ ef: Int64,
                    allowed: (UnsafePointer<UInt64>?, Int64)?, _ threads: Int32, _ keysOut: UnsafeMutablePointer<UInt64>?,
                    _ scoresOut: UnsafeMutablePointer<Float>?, _ countsOut: UnsafeMutablePointer<Int32>?)
    throws(LodestoneError)
{
    let index = try box(handle)
    let nq = try Check.count(nq, "nq", atMost: Int64(Int32.max))
    let k = try Check.count(k, "k", atLeast: 1, atMost: 100_000)
    let ef = try Check.count(ef, "ef", atMost: 1_000_000)
    let threads = try Check.threads(threads)
    if nq == 0 { return }
    let keysOut = try Check.pointer(keysOut, "keys_out"), scoresOut = try Check.pointer(scoresOut, "scores_out")
    let countsOut = try Check.pointer(countsOut, "counts_out")
    _ = try Check.product(nq, k, "results")
    let rows = try Check.floats(queries, count: try Check.product(nq, index.dimension, "queries"), "queries")
    let efArgument: Int? = ef == 0 ? nil : ef
    var allowedKeys: Bitset? = nil
    var sparseKeys: Set<UInt64>? = nil
    if let (pointer, n) = allowed {
        let n = try Check.count(n, "n_allowed", atMost: 1 << 40)
        let list = n == 0 ? UnsafeBufferPointer(start: nil, count: 0)
                          : UnsafeBufferPointer(start: try Check.pointer(pointer, "allowed_keys"), count: n)
        let largest = list.max() ?? 0
        // A set of bits up to the largest key, unless the keys are so large
        // that it would dwarf the index: then a hash set of them.
        if largest < UInt64(max(1 << 20, 64 * index.count)) {
            var set = Bitset(capacity: n == 0 ? 0 : Int(largest) + 1)
            for key in list { set.insert(Int(key)) }
            allowedKeys = set
        } else {
            sparseKeys = Set(list)
        }
    }
    let results: [[Neighbor]] = try index.read { (engine) throws(LodestoneError) -> [[Neighbor]] in
        if let sparseKeys { return try sparseSearch(engine, rows, nq: nq, k: k, keys: sparseKeys, threads: threads,
                                                    dimension: index.dimension, metric: index.metric) }
        switch engine {
        case let .hnsw(i):
            if nq == 1 {
                let q = rows
                if let allowedKeys { return [try i.search(q, k: k, ef: efArgument, allowedKeys: allowedKeys).results] }
                return [try i.search(q, k: k, ef: efArgument)]
            }
            return try i.search(batch: rows, k: k, ef: efArgument, allowedKeys: allowedKeys, threads: threads)
        case let .flat(i):
            if nq == 1 {
                if let allowedKeys { return [try i.search(rows, k: k, allowedKeys: allowedKeys).results] }
                return [try i.search(rows, k: k)]
            }
            if let allowedKeys { return try i.search(batch: rows, k: k, allowedKeys: allowedKeys, threads: threads) }
            return try i.search(batch: rows, k: k, threads: threads)
        }
    }
    write(results, k: k, keys: keysOut, scores: scoresOut, counts: countsOut)
}

/// A search among keys too large for a set of bits: an exact index of
/// just their vectors (exact, so each query gets min(k, matches)).
private func sparseSearch(_ engine: VectorIndexBox.Engine, _ rows: [Float], nq: Int, k: Int, keys: Set<UInt64>,
                          threads: Int, dimension: Int, metric: Metric) throws(LodestoneError) -> [[Neighbor]] {
    func vector(_ key: UInt64) -> [Float]? {
        switch engine {
        case let .hnsw(i): return i.vector(forKey: key)
        case let .flat(i): return i.vector(forKey: key)
        }
    }
    var subset = try FlatIndex(dimension: dimension, metric: metric)
    for key in keys.sorted() { if let v = vector(key) { try subset.add(v, key: key) } }
    guard !subset.isEmpty else {
        // No allowed key is stored: the queries are still checked, as the
        // index would check them.
        let stored: Int
        switch engine {
        case let .hnsw(i): stored = i.count
        case let .flat(i): stored = i.count
        }
        if stored == 0 { throw .emptyIndex }
        for q in 0..<nq {
            let row = rows[(q * dimension)..<((q + 1) * dimension)]
            if let j = row.firstIndex(where: { !$0.isFinite }) {
                throw .nonFiniteComponent(index: j - q * dimension, value: row[j])
            }
            if metric == .cosine && row.allSatisfy({ $0 == 0 }) { throw .zeroVector }
        }
        return [[Neighbor]](repeating: [], count: nq)
    }
    return try subset.search(batch: rows, k: k, threads: threads)
}

@_cdecl("lds_vindex_search")
public func lds_vindex_search(_ handle: OpaquePointer?, _ queries: UnsafePointer<Float>?, _ nq: Int64, _ k: Int64,
                              _ ef: Int64, _ threads: Int32, _ keysOut: UnsafeMutablePointer<UInt64>?,
                              _ scoresOut: UnsafeMutablePointer<Float>?, _ countsOut: UnsafeMutablePointer<Int32>?,
                              _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        try search(handle, queries, nq, k, ef, allowed: nil, threads, keysOut, scoresOut, countsOut)
    }
}

@_cdecl("lds_vindex_search_filtered")
public func lds_vindex_search_filtered(_ handle: OpaquePointer?, _ queries: UnsafePointer<Float>?, _ nq: Int64,
                                       _ k: Int64, _ ef: Int64, _ allowedKeys: UnsafePointer<UInt64>?, _ nAllowed: Int64,
                                       _ threads: Int32, _ keysOut: UnsafeMutablePointer<UInt64>?,
                                       _ scoresOut: UnsafeMutablePointer<Float>?, _ countsOut: UnsafeMutablePointer<Int32>?,
                                       _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        try search(handle, queries, nq, k, ef, allowed: (allowedKeys, nAllowed), threads, keysOut, scoresOut, countsOut)
    }
}

@_cdecl("lds_vindex_get")
public func lds_vindex_get(_ handle: OpaquePointer?, _ key: UInt64, _ out: UnsafeMutablePointer<Float>?,
                           _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try box(handle)
        let out = try Check.pointer(out, "out")
        let v: [Float]? = try index.read { engine -> [Float]? in
            switch engine {
            case let .hnsw(i): return i.vector(forKey: key)
            case let .flat(i): return i.vector(forKey: key)
            }
        }
        guard let v else { throw .keyNotFound(key) }
        v.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: $0.count) }
    }
}

@_cdecl("lds_vindex_persist")
public func lds_vindex_persist(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try box(handle)
        let path = try Check.string(path, "path")
        try index.read { (engine) throws(LodestoneError) in
            switch engine {
            case let .hnsw(i): try i.persist(to: path)
            case let .flat(i): try i.persist(to: path)
            }
        }
    }
}

@_cdecl("lds_vindex_count")
public func lds_vindex_count(_ handle: OpaquePointer?) -> Int64 {
    (try? box(handle)).map { Int64($0.count) } ?? -1
}

@_cdecl("lds_vindex_dimension")
public func lds_vindex_dimension(_ handle: OpaquePointer?) -> Int64 {
    (try? box(handle)).map { Int64($0.dimension) } ?? -1
}

/// `LDS_METRIC_*` for a metric.
func metricCode(_ metric: Metric) -> Int32 {
    switch metric {
    case .cosine: return 0
    case .euclidean: return 1
    case .dotProduct: return 2
    }
}

@_cdecl("lds_vindex_metric")
public func lds_vindex_metric(_ handle: OpaquePointer?) -> Int32 {
    (try? box(handle)).map { metricCode($0.metric) } ?? -1
}

@_cdecl("lds_vindex_kind")
public func lds_vindex_kind(_ handle: OpaquePointer?) -> Int32 {
    (try? box(handle)).map { $0.isHNSW ? 0 : 1 } ?? -1
}

@_cdecl("lds_vindex_memory_bytes")
public func lds_vindex_memory_bytes(_ handle: OpaquePointer?) -> Int64 {
    guard let index = try? box(handle) else { return -1 }
    let bytes = try? index.read { engine -> Int in
        switch engine {
        case let .hnsw(i): return i.memoryBytes
        case let .flat(i): return i.count * (i.dimension * 4 + 16)
        }
    }
    return Int64(bytes ?? 0)
}
