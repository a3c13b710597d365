// lds_db and lds_index: the database of named, durable record indexes
// (lodestone.h, "Database").
import Lodestone

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The object behind an `lds_db`.
final class DatabaseBox {
    let database: Database
    init(_ database: Database) { self.database = database }
}

/// The object behind an `lds_index`: a shared ``Index`` (the database
/// hands every caller the same one) and its model name as a C string.
final class IndexBox {
    let index: Index
    let model: UnsafeMutablePointer<CChar>
    /// The text field's name, or nil.
    let textField: UnsafeMutablePointer<CChar>?

    init(_ index: Index) {
        self.index = index
        model = strdup(index.embeddingModel)!
        textField = index.textField.map { strdup($0)! }
    }

    deinit {
        free(model)
        free(textField)
    }
}

private func db(_ handle: OpaquePointer?) throws(LodestoneError) -> Database {
    try object(handle, DatabaseBox.self, name: "db").database
}

func ix(_ handle: OpaquePointer?) throws(LodestoneError) -> Index {
    try object(handle, IndexBox.self, name: "index").index
}

private func text(_ out: UnsafeMutablePointer<OpaquePointer?>, _ s: String) { out.pointee = retain(TextBox(s)) }

/// A JSON string literal.
private func json(_ s: String) -> String { MetadataValue.string(s).jsonText }

private func json(_ strings: [String]) -> String { "[" + strings.map(json).joined(separator: ",") + "]" }

@_cdecl("lds_db_open")
public func lds_db_open(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let out = try Check.pointer(out, "out")
        out.pointee = retain(DatabaseBox(try Database(path: try Check.string(path, "path"))))
    }
}

@_cdecl("lds_db_open_read_only")
public func lds_db_open_read_only(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                  _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let out = try Check.pointer(out, "out")
        out.pointee = retain(DatabaseBox(try Database(path: try Check.string(path, "path"), readOnly: true)))
    }
}

@_cdecl("lds_db_close")
public func lds_db_close(_ handle: OpaquePointer?, _ persist: Int32, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in try db(handle).close(persist: persist != 0) }
}

@_cdecl("lds_db_free")
public func lds_db_free(_ handle: OpaquePointer?) { release(handle) }

@_cdecl("lds_db_create_index")
public func lds_db_create_index(_ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ dimension: Int64, _ metric: Int32,
                                _ model: UnsafePointer<CChar>?, _ kind: Int32, _ m: Int64, _ efConstruction: Int64,
                                _ efSearch: Int64, _ traversal: Int32, _ durability: Int32,
                                _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                _ err: ErrorOut) -> Int32 {
    lds_db_create_text_index(handle, name, dimension, metric, model, kind, m, efConstruction, efSearch, traversal,
                             durability, nil, out, err)
}

@_cdecl("lds_db_create_text_index")
public func lds_db_create_text_index(_ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ dimension: Int64,
                                     _ metric: Int32, _ model: UnsafePointer<CChar>?, _ kind: Int32, _ m: Int64,
                                     _ efConstruction: Int64, _ efSearch: Int64, _ traversal: Int32, _ durability: Int32,
                                     _ textField: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                     _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let database = try db(handle)
        let out = try Check.pointer(out, "out")
        let defaults = HNSWParameters()
        let parameters = HNSWParameters(
            m: m == 0 ? defaults.m : try Check.count(m, "m", atLeast: 2, atMost: 128),
            efConstruction: efConstruction == 0 ? defaults.efConstruction : try Check.count(efConstruction, "ef_construction", atLeast: 1),
            efSearch: efSearch == 0 ? defaults.efSearch : try Check.count(efSearch, "ef_search", atLeast: 1),
            traversal: try Check.traversal(traversal))
        let options = IndexOptions(kind: try Check.kind(kind), hnsw: parameters, durability: try Check.durability(durability),
                                   textField: try Check.optionalString(textField, "text_field"))
        // A sparse index has no dense dimension (0).
        let index = try database.createIndex(name: try Check.string(name, "name"),
                                             dimension: try Check.count(dimension, "dimension",
                                                                        atLeast: options.kind == .sparse ? 0 : 1, atMost: 65_536),
                                             metric: try Check.metric(metric), embeddingModel: try Check.optionalString(model, "embedding_model") ?? "",
                                             options: options)
        out.pointee = retain(IndexBox(index))
    }
}

@_cdecl("lds_db_open_index")
public func lds_db_open_index(_ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ model: UnsafePointer<CChar>?,
                              _ durability: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let database = try db(handle)
        let out = try Check.pointer(out, "out")
        let index = try database.index(try Check.string(name, "name"), embeddingModel: try Check.optionalString(model, "embedding_model"),
                                       durability: try Check.durability(durability))
        out.pointee = retain(IndexBox(index))
    }
}

@_cdecl("lds_db_delete_index")
public func lds_db_delete_index(_ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in try db(handle).deleteIndex(try Check.string(name, "name")) }
}

@_cdecl("lds_db_list_indexes")
public func lds_db_list_indexes(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let database = try db(handle)
        text(try Check.pointer(out, "out"), json(database.listIndexes()))
    }
}

@_cdecl("lds_db_describe_index")
public func lds_db_describe_index(_ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                  _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let database = try db(handle)
        let out = try Check.pointer(out, "out")
        let d = try database.describeIndex(try Check.string(name, "name"))
        text(out, #"{"name":\#(json(d.name)),"dimension":\#(d.dimension),"metric":\#(json(d.metric.rawValue)),"#
             + #""embedding_model":\#(json(d.embeddingModel)),"kind":\#(json(d.kind.rawValue)),"#
             + #""record_count":\#(d.recordCount),"disk_bytes":\#(d.diskBytes),"#
             + #""resident_bytes_per_vector":\#(d.residentBytesPerVector.map(String.init) ?? "null"),"ready":\#(d.ready),"#
             + #""text_field":\#(d.textField.map(json) ?? "null")}"#)
    }
}

@_cdecl("lds_db_import")
public func lds_db_import(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ name: UnsafePointer<CChar>?,
                          _ dimension: Int64, _ metric: Int32, _ model: UnsafePointer<CChar>?, _ skipBadLines: Int32,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let database = try db(handle)
        let out = try Check.pointer(out, "out")
        let d = try Check.count(dimension, "dimension", atMost: 65_536)
        let report = try database.importRecords(from: try Check.string(path, "path"), into: try Check.string(name, "name"),
                                                dimension: d == 0 ? nil : d, metric: try Check.metric(metric),
                                                embeddingModel: try Check.optionalString(model, "embedding_model") ?? "", skipBadLines: skipBadLines != 0)
        text(out, #"{"records":\#(report.records),"skipped_lines":\#(report.skippedLines),"#
             + #""skipped_errors":\#(json(report.skippedErrors)),"created_index":\#(report.createdIndex)}"#)
    }
}

// MARK: lds_index

@_cdecl("lds_index_free")
public func lds_index_free(_ handle: OpaquePointer?) { release(handle) }

@_cdecl("lds_index_close")
public func lds_index_close(_ handle: OpaquePointer?, _ persist: Int32, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in try ix(handle).close(persist: persist != 0) }
}

@_cdecl("lds_index_dimension")
public func lds_index_dimension(_ handle: OpaquePointer?) -> Int64 { (try? ix(handle)).map { Int64($0.dimension) } ?? -1 }

@_cdecl("lds_index_metric")
public func lds_index_metric(_ handle: OpaquePointer?) -> Int32 { (try? ix(handle)).map { metricCode($0.metric) } ?? -1 }

@_cdecl("lds_index_kind")
public func lds_index_kind(_ handle: OpaquePointer?) -> Int32 {
    (try? ix(handle)).map { index -> Int32 in
        switch index.kind {
        case .hnsw: return 0
        case .flat: return 1
        case .sparse: return 2
        }
    } ?? -1
}

nonisolated(unsafe) private let noModel = staticCString("")

@_cdecl("lds_index_embedding_model")
public func lds_index_embedding_model(_ handle: OpaquePointer?) -> UnsafePointer<CChar> {
    (try? object(handle, IndexBox.self, name: "index")).map { UnsafePointer($0.model) } ?? noModel
}

@_cdecl("lds_index_text_field")
public func lds_index_text_field(_ handle: OpaquePointer?) -> UnsafePointer<CChar>? {
    (try? object(handle, IndexBox.self, name: "index"))?.textField.map { UnsafePointer($0) }
}

@_cdecl("lds_index_count")
public func lds_index_count(_ handle: OpaquePointer?) -> Int64 {
    guard let index = try? ix(handle), index.isOpen else { return -1 }
    return Int64(index.count)
}

@_cdecl("lds_index_upsert")
public func lds_index_upsert(_ handle: OpaquePointer?, _ ids: UnsafePointer<CChar>?, _ idOffsets: UnsafePointer<Int64>?,
                             _ n: Int64, _ values: UnsafePointer<Float>?, _ metadata: UnsafePointer<CChar>?,
                             _ metadataOffsets: UnsafePointer<Int64>?, _ namespace: UnsafePointer<CChar>?,
                             _ model: UnsafePointer<CChar>?, _ threads: Int32, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        try upsertRecords(handle, ids, idOffsets, n, values, metadata, metadataOffsets, namespace, model, threads,
                          sparse: nil)
    }
}

/// lds_index_upsert and lds_index_upsert_sparse: every argument checked,
/// the records built (with `sparse(n)`'s vectors when given), then upserted.
func upsertRecords(_ handle: OpaquePointer?, _ ids: UnsafePointer<CChar>?, _ idOffsets: UnsafePointer<Int64>?,
                   _ n: Int64, _ values: UnsafePointer<Float>?, _ metadata: UnsafePointer<CChar>?,
                   _ metadataOffsets: UnsafePointer<Int64>?, _ namespace: UnsafePointer<CChar>?,
                   _ model: UnsafePointer<CChar>?, _ threads: Int32,
                   sparse: ((Int) throws(LodestoneError) -> [SparseVector?])?) throws(LodestoneError) {
    let index = try ix(handle)
    let threads = try Check.threads(threads)
    let n = try Check.count(n, "n", atMost: Int64(Int32.max))
    let idList = try Check.strings(ids, idOffsets, count: n, "ids")
    let d = index.dimension
    let rows = try Check.floats(values, count: try Check.product(n, d, "values"), "values")
    let sparseList = try sparse?(n)
    let metadataList: [String]? = metadataOffsets == nil && metadata == nil
        ? nil : try Check.strings(metadata, metadataOffsets, count: n, "metadata")
    var records: [Record] = []
    records.reserveCapacity(n)
    for i in 0..<n {
        var m: Metadata? = nil
        if let metadataList {
            do throws(LodestoneError) {
                m = try Check.metadata(metadataList[i])
            } catch let .invalidMetadata(field, reason) {
                throw .invalidMetadata(field: field, reason: "record \"\(idList[i])\": \(reason)")
            } catch {
                throw .invalidMetadata(field: "", reason: "record \"\(idList[i])\": \(error)")
            }
        }
        records.append(Record(id: idList[i], values: Array(rows[(i * d)..<((i + 1) * d)]), metadata: m,
                              sparseValues: sparseList?[i]))
    }
    try index.upsert(records, namespace: try Check.namespace(namespace),
                     embeddingModel: try Check.optionalString(model, "embedding_model"), threads: threads)
}

/// The arguments the three queries share, checked.
struct QueryArguments {
    let topK: Int
    let ef: Int?
    let namespace: String
    let filter: Filter?
    let values: Bool
    let metadata: Bool

    init(_ topK: Int64, _ ef: Int64, _ namespace: UnsafePointer<CChar>?, _ filter: UnsafePointer<CChar>?,
         _ includeValues: Int32, _ includeMetadata: Int32) throws(LodestoneError) {
        self.topK = try Check.count(topK, "top_k", atLeast: 1, atMost: 100_000)
        let e = try Check.count(ef, "ef", atMost: 1_000_000)
        self.ef = e == 0 ? nil : e
        self.namespace = try Check.namespace(namespace)
        self.filter = try Check.filter(filter)
        values = includeValues != 0
        metadata = includeMetadata != 0
    }

    /// The answers as an `lds_matches` handle in `out`.
    func hand(_ groups: [[Match]], dimension: Int, to out: UnsafeMutablePointer<OpaquePointer?>) {
        out.pointee = retain(MatchesBox(groups: groups, dimension: dimension, values: values, metadata: metadata))
    }
}

@_cdecl("lds_index_query")
public func lds_index_query(_ handle: OpaquePointer?, _ vector: UnsafePointer<Float>?, _ topK: Int64,
                            _ namespace: UnsafePointer<CChar>?, _ filter: UnsafePointer<CChar>?, _ includeValues: Int32,
                            _ includeMetadata: Int32, _ ef: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                            _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let a = try QueryArguments(topK, ef, namespace, filter, includeValues, includeMetadata)
        let v = try Check.floats(vector, count: index.dimension, "vector")
        let r = try index.query(vector: v, topK: a.topK, namespace: a.namespace, filter: a.filter, includeValues: a.values,
                                includeMetadata: a.metadata, ef: a.ef)
        a.hand([r.matches], dimension: index.dimension, to: out)
    }
}

@_cdecl("lds_index_query_id")
public func lds_index_query_id(_ handle: OpaquePointer?, _ id: UnsafePointer<CChar>?, _ topK: Int64,
                               _ namespace: UnsafePointer<CChar>?, _ filter: UnsafePointer<CChar>?, _ includeValues: Int32,
                               _ includeMetadata: Int32, _ ef: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                               _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let a = try QueryArguments(topK, ef, namespace, filter, includeValues, includeMetadata)
        let r = try index.query(id: try Check.string(id, "id"), topK: a.topK, namespace: a.namespace, filter: a.filter,
                                includeValues: a.values, includeMetadata: a.metadata, ef: a.ef)
        a.hand([r.matches], dimension: index.dimension, to: out)
    }
}

@_cdecl("lds_index_query_batch")
public func lds_index_query_batch(_ handle: OpaquePointer?, _ vectors: UnsafePointer<Float>?, _ nq: Int64, _ topK: Int64,
                                  _ namespace: UnsafePointer<CChar>?, _ filter: UnsafePointer<CChar>?,
                                  _ includeValues: Int32, _ includeMetadata: Int32, _ ef: Int64, _ threads: Int32,
                                  _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let a = try QueryArguments(topK, ef, namespace, filter, includeValues, includeMetadata)
        let threads = try Check.threads(threads)
        let nq = try Check.count(nq, "nq", atMost: Int64(Int32.max))
        let d = index.dimension
        let rows = try Check.floats(vectors, count: try Check.product(nq, d, "vectors"), "vectors")
        let queries = (0..<nq).map { Array(rows[($0 * d)..<(($0 + 1) * d)]) }
        let groups = try index.queryBatch(vectors: queries, topK: a.topK, namespace: a.namespace, filter: a.filter,
                                          includeValues: a.values, includeMetadata: a.metadata, ef: a.ef, threads: threads)
        a.hand(groups, dimension: d, to: out)
    }
}

@_cdecl("lds_index_fetch")
public func lds_index_fetch(_ handle: OpaquePointer?, _ ids: UnsafePointer<CChar>?, _ idOffsets: UnsafePointer<Int64>?,
                            _ n: Int64, _ namespace: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                            _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let idList = try Check.strings(ids, idOffsets, count: try Check.count(n, "n", atMost: Int64(Int32.max)), "ids")
        let found = try index.fetch(ids: idList, namespace: try Check.namespace(namespace))
        var seen = Set<String>()
        let list = idList.compactMap { id -> Match? in
            guard seen.insert(id).inserted, let r = found[id] else { return nil }
            return Match(id: id, score: 0, values: r.values, metadata: r.metadata, sparseValues: r.sparseValues)
        }
        out.pointee = retain(MatchesBox(groups: [list], dimension: index.dimension, values: true, metadata: true))
    }
}

@_cdecl("lds_index_update")
public func lds_index_update(_ handle: OpaquePointer?, _ id: UnsafePointer<CChar>?, _ values: UnsafePointer<Float>?,
                             _ setMetadata: UnsafePointer<CChar>?, _ namespace: UnsafePointer<CChar>?,
                             _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let v = values == nil ? nil : try Check.floats(values, count: index.dimension, "values")
        let m = try Check.optionalString(setMetadata, "set_metadata_json").map { (text: String) throws(LodestoneError) -> Metadata in
            try Check.metadata(text) ?? [:]
        }
        try index.update(id: try Check.string(id, "id"), values: v, setMetadata: m, namespace: try Check.namespace(namespace))
    }
}

@_cdecl("lds_index_delete")
public func lds_index_delete(_ handle: OpaquePointer?, _ ids: UnsafePointer<CChar>?, _ idOffsets: UnsafePointer<Int64>?,
                             _ n: Int64, _ namespace: UnsafePointer<CChar>?, _ deleted: UnsafeMutablePointer<Int64>?,
                             _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let idList = try Check.strings(ids, idOffsets, count: try Check.count(n, "n", atMost: Int64(Int32.max)), "ids")
        let count = try index.delete(ids: idList, namespace: try Check.namespace(namespace))
        deleted?.pointee = Int64(count)
    }
}

@_cdecl("lds_index_delete_filter")
public func lds_index_delete_filter(_ handle: OpaquePointer?, _ filter: UnsafePointer<CChar>?,
                                    _ namespace: UnsafePointer<CChar>?, _ deleted: UnsafeMutablePointer<Int64>?,
                                    _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        guard let f = try Check.filter(try Check.pointer(filter, "filter_json")) else { return }
        deleted?.pointee = Int64(try index.delete(filter: f, namespace: try Check.namespace(namespace)))
    }
}

@_cdecl("lds_index_delete_all")
public func lds_index_delete_all(_ handle: OpaquePointer?, _ namespace: UnsafePointer<CChar>?,
                                 _ deleted: UnsafeMutablePointer<Int64>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        deleted?.pointee = Int64(try index.deleteAll(namespace: try Check.namespace(namespace)))
    }
}

@_cdecl("lds_index_list_ids")
public func lds_index_list_ids(_ handle: OpaquePointer?, _ namespace: UnsafePointer<CChar>?, _ prefix: UnsafePointer<CChar>?,
                               _ filter: UnsafePointer<CChar>?, _ limit: Int64, _ token: UnsafePointer<CChar>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let page = try index.listIDs(namespace: try Check.namespace(namespace), prefix: try Check.optionalString(prefix, "prefix") ?? "",
                                     filter: try Check.filter(filter),
                                     limit: try Check.count(limit, "limit", atLeast: 1, atMost: 1 << 40),
                                     paginationToken: try Check.optionalString(token, "pagination_token"))
        text(out, #"{"ids":\#(json(page.ids)),"next":\#(page.nextToken.map(json) ?? "null")}"#)
    }
}

@_cdecl("lds_index_stats")
public func lds_index_stats(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let out = try Check.pointer(out, "out")
        let s = try index.describeStats()
        let namespaces = s.namespaces.keys.sorted().map { #"\#(json($0)):{"vector_count":\#(s.namespaces[$0]!)}"# }
        text(out, #"{"namespaces":{\#(namespaces.joined(separator: ","))},"dimension":\#(s.dimension),"#
             + #""total_vector_count":\#(s.totalRecordCount),"metric":\#(json(s.metric.rawValue))}"#)
    }
}

@_cdecl("lds_index_persist")
public func lds_index_persist(_ handle: OpaquePointer?, _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in try ix(handle).persist() }
}

@_cdecl("lds_index_export")
public func lds_index_export(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ records: UnsafeMutablePointer<Int64>?,
                             _ err: ErrorOut) -> Int32 {
    withStatus(err) { () throws(LodestoneError) in
        let index = try ix(handle)
        let n = try index.export(to: try Check.string(path, "path"))
        records?.pointee = Int64(n)
    }
}
