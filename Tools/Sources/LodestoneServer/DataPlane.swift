@_spi(LodestoneTools) import Lodestone

// The data plane of one index, served under `/_data/<index>/` (the host
// that describe_index returns): upsert, query, fetch, update, delete,
// stats, list, namespaces and bulk imports, in Pinecone's camelCase JSON.

extension PineconeService {
    /// Routes a request for index `name`; `rest` is the path after it.
    func dataPlane(_ name: String, _ rest: [String], _ r: ServerRequest) async throws(APIError) -> Reply {
        let index = try openIndex(name)
        switch (r.method, rest.count, rest.first) {
        case (.post, 2, "vectors") where rest[1] == "upsert": return try await upsert(index, r)
        case (.post, 1, "query"): return try query(index, r)
        case (.get, 2, "vectors") where rest[1] == "fetch": return try fetch(index, r)
        case (.post, 2, "vectors") where rest[1] == "fetch_by_metadata": return try fetchByMetadata(index, r)
        case (.post, 2, "vectors") where rest[1] == "update": return try await update(index, r)
        case (.post, 2, "vectors") where rest[1] == "delete": return try await delete(index, r)
        case (.get, 2, "vectors") where rest[1] == "list": return try list(index, r)
        case (.post, 1, "describe_index_stats"), (.get, 1, "describe_index_stats"): return try stats(index, r)
        case (.post, 1, "namespaces"): return try createNamespace(index, r)
        case (.get, 1, "namespaces"): return try listNamespaces(index, r)
        case (.get, 2, "namespaces"): return try describeNamespace(index, rest[1])
        case (.delete, 2, "namespaces"): return try await deleteNamespace(index, rest[1])
        case (.post, 2, "bulk") where rest[1] == "imports": return try startImport(index, r)
        case (.get, 2, "bulk") where rest[1] == "imports": return try listImports(index, r)
        case (.get, 3, "bulk") where rest[1] == "imports": return try describeImport(index, rest[2])
        case (.delete, 3, "bulk") where rest[1] == "imports": return try cancelImport(index, rest[2])
        case (_, _, "records"), (_, 3..., "namespaces"):
            throw .notImplemented("The records and documents API (integrated embedding)")
        default:
            throw .notFound("no route for \(r.method) /\(rest.joined(separator: "/")) on index \"\(name)\"")
        }
    }

    // MARK: Namespaces and shared fields

    /// `null`, `""` and `"__default__"` all name the default namespace.
    static func namespace(_ text: String?) -> String {
        guard let text, text != "__default__" else { return "" }
        return text
    }

    /// The default namespace as Pinecone (2025-04 on) reports it.
    static func reported(_ namespace: String) -> String { namespace.isEmpty ? "__default__" : namespace }

    static func filter(_ body: Fields) throws(APIError) -> Filter? {
        guard let f = body.raw("filter") else { return nil }
        if case let .object(fields) = f, fields.isEmpty { return nil }  // `{}` matches everything
        return try library { () throws(LodestoneError) -> Filter in try Filter(json: f) }
    }

    /// A sparse vector under the first of `names` present, checked (errors
    /// name `place`); nil when absent, null, or empty (some clients send
    /// `{"indices": [], "values": []}` for none).
    static func sparse(_ body: Fields, _ names: String..., place: String) throws(APIError) -> SparseVector? {
        guard let json = names.lazy.compactMap({ body.raw($0) }).first, json != .null else { return nil }
        let v = try library { () throws(LodestoneError) -> SparseVector in try SparseVector(json: json, field: place) }
        return v.isEmpty ? nil : v
    }

    // MARK: Writes

    /// `POST /vectors/upsert`. Within one request a repeated id keeps its
    /// last record, as sending them one by one would.
    func upsert(_ index: Index, _ r: ServerRequest) async throws(APIError) -> Reply {
        let body = try r.fields()
        guard let items = try body.array("vectors") else { throw .badRequest("\"vectors\" is required") }
        let namespace = Self.namespace(try body.string("namespace"))
        var records: [Record] = []
        records.reserveCapacity(items.count)
        var position: [String: Int] = [:]
        for (i, item) in items.enumerated() {
            let v = try Fields(item, place: "vectors[\(i)]")
            guard let id = try v.string("id") else { throw .badRequest("vectors[\(i)] has no \"id\"") }
            let sparse = try Self.sparse(v, "sparseValues", "sparse_values", place: "vectors[\(i)].sparseValues")
            // A sparse index's records carry sparse values only.
            guard let values = try v.floats("values") ?? (index.kind == .sparse ? [] : nil) else {
                throw .badRequest("vectors[\(i)] (\"\(id)\") has no \"values\"")
            }
            var metadata: Metadata? = nil
            if let m = v.raw("metadata") {
                metadata = try library { () throws(LodestoneError) -> Metadata in
                    do throws(LodestoneError) {
                        return try Metadata.from(json: m)
                    } catch let .invalidMetadata(field, reason) {
                        throw .invalidMetadata(field: field, reason: "vectors[\(i)] (\"\(id)\"): \(reason)")
                    }
                }
            }
            let record = Record(id: id, values: values, metadata: metadata, sparseValues: sparse)
            if let earlier = position[id] { records[earlier] = record } else {
                position[id] = records.count
                records.append(record)
            }
        }
        let count = records.count, batch = records
        try await writing { () throws(APIError) in
            // A large batch inserts on every core; a small one is not worth the hand-off.
            let threads = batch.count >= 256 ? Parallelism.defaultThreadCount : 1
            _ = try library { () throws(LodestoneError) -> Int in
                try index.upsert(batch, namespace: namespace, threads: threads)
            }
        }
        return Reply { w in w.object { w in w.field("upsertedCount", count) } }
    }

    /// `POST /vectors/update`: one record by `id` (new `values`, fields of
    /// `setMetadata` set), or every record passing `filter` (metadata
    /// only; `dryRun` counts without changing). An id that is not stored
    /// changes nothing, as in Pinecone: `matchedRecords` says 0.
    func update(_ index: Index, _ r: ServerRequest) async throws(APIError) -> Reply {
        let body = try r.fields()
        let namespace = Self.namespace(try body.string("namespace"))
        let values = try body.floats("values")
        // Present but empty clears the record's sparse vector.
        let sparse: SparseVector?
        if let json = body.raw("sparseValues"), json != .null {
            sparse = try library { () throws(LodestoneError) -> SparseVector in
                try SparseVector(json: json, field: "sparseValues")
            }
        } else {
            sparse = nil
        }
        let setMetadata: Metadata? = try body.raw("setMetadata").map { (m) throws(APIError) -> Metadata in
            try library { () throws(LodestoneError) -> Metadata in try Metadata.from(json: m) }
        }
        if let id = try body.string("id") {
            guard body.raw("filter") == nil else { throw .badRequest("give \"id\" or \"filter\", not both") }
            let matched = try await writing { () throws(APIError) -> Int in
                do throws(LodestoneError) {
                    try index.update(id: id, values: values, sparseValues: sparse, setMetadata: setMetadata,
                                     namespace: namespace)
                    return 1
                } catch .recordNotFound {
                    return 0
                } catch {
                    throw APIError(error)
                }
            }
            return Reply { w in w.object { w in w.field("matchedRecords", matched) } }
        }
        guard let filter = try Self.filter(body) else { throw .badRequest("\"id\" or a non-empty \"filter\" is required") }
        guard values == nil && sparse == nil else {
            throw .badRequest("an update by filter sets metadata only; \"values\" and \"sparseValues\" need an \"id\"")
        }
        let dryRun = try body.bool("dryRun") ?? false
        let matched = try await writing { () throws(APIError) -> Int in
            guard !dryRun, let setMetadata else {
                return try library { () throws(LodestoneError) -> Int in try index.count(namespace: namespace, filter: filter) }
            }
            // One write: every merged record validated first, then one log record.
            return try library { () throws(LodestoneError) -> Int in
                try index.update(filter: filter, setMetadata: setMetadata, namespace: namespace)
            }
        }
        return Reply { w in w.object { w in w.field("matchedRecords", matched) } }
    }

    /// `POST /vectors/delete`: by `ids`, `deleteAll`, or `filter`.
    func delete(_ index: Index, _ r: ServerRequest) async throws(APIError) -> Reply {
        let body = try r.fields()
        let namespace = Self.namespace(try body.string("namespace"))
        let ids = try body.strings("ids")
        let all = try body.bool("deleteAll") ?? false
        let filter = try Self.filter(body)
        let given = (ids != nil ? 1 : 0) + (all ? 1 : 0) + (body.raw("filter") != nil ? 1 : 0)
        guard given == 1 else { throw .badRequest("give exactly one of \"ids\", \"deleteAll\" or \"filter\"") }
        try await writing { () throws(APIError) in
            try library { () throws(LodestoneError) in
                if let ids { _ = try index.delete(ids: ids, namespace: namespace) }
                else if all { _ = try index.deleteAll(namespace: namespace) }
                else if let filter { _ = try index.delete(filter: filter, namespace: namespace) }
                else { _ = try index.deleteAll(namespace: namespace) }  // `filter: {}` matches every record
            }
        }
        return .empty
    }

    // MARK: Reads

    /// `POST /query`, by `vector`, `sparseVector`, both (hybrid: the sum of
    /// the two scores, as Pinecone's sparse-dense queries), or a stored
    /// record's `id`; on an index with a text field, by `text` (BM25), alone
    /// or with `vector`.
    func query(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let body = try r.fields()
        let sparse = try Self.sparse(body, "sparseVector", place: "sparseVector")
        if body.raw("queries") != nil { throw .badRequest("\"queries\" (several queries in one request) is not supported; "
                                                         + "send one request per query vector") }
        guard let topK = try body.int("topK", in: 1...10_000) else { throw .badRequest("\"topK\" is required") }
        let namespace = Self.namespace(try body.string("namespace"))
        let filter = try Self.filter(body)
        let includeValues = try body.bool("includeValues") ?? false
        let includeMetadata = try body.bool("includeMetadata") ?? false
        let vector = try body.floats("vector")
        let id = try body.string("id")
        // Lodestone's own knob: the HNSW beam width for this query.
        let ef = try body.object("lodestone")?.int("ef", in: 1...10_000)
        let text = try body.string("text")
        guard (vector == nil && sparse == nil && text == nil) != (id == nil) else {
            throw .badRequest("give \"vector\", \"sparseVector\" or both, \"text\" (with or without \"vector\"), "
                              + "or \"id\" alone")
        }
        guard text == nil || sparse == nil else {
            throw .badRequest("give \"text\" or \"sparseVector\", not both (text is searched through its BM25 vector)")
        }
        let matches: [Match]
        if let text {
            matches = try library { () throws(LodestoneError) -> [Match] in
                try index.query(text: text, vector: vector, topK: topK, namespace: namespace, filter: filter,
                                includeValues: includeValues, includeMetadata: includeMetadata, ef: ef).matches
            }
        } else if let sparse {
            matches = try library { () throws(LodestoneError) -> [Match] in
                try index.query(vector: vector, sparseVector: sparse, topK: topK, namespace: namespace, filter: filter,
                                includeValues: includeValues, includeMetadata: includeMetadata, ef: ef).matches
            }
        } else if let vector, index.metric == .cosine, !vector.isEmpty, vector.allSatisfy({ $0 == 0 }) {
            // A zero vector has no direction: every record scores 0 (LlamaIndex
            // sends one to list nodes by filter).
            guard vector.count == index.dimension else {
                throw APIError(.dimensionMismatch(expected: index.dimension, actual: vector.count))
            }
            let ids = try library { () throws(LodestoneError) -> [String] in
                try index.listIDs(namespace: namespace, filter: filter, limit: topK).ids
            }
            let records = try library { () throws(LodestoneError) -> [String: Record] in
                try index.fetch(ids: ids, namespace: namespace)
            }
            matches = ids.compactMap { id in
                records[id].map { Match(id: id, score: 0, values: includeValues ? $0.values : nil,
                                        metadata: includeMetadata ? $0.metadata : nil) }
            }
        } else if let vector {
            matches = try library { () throws(LodestoneError) -> [Match] in
                try index.query(vector: vector, topK: topK, namespace: namespace, filter: filter,
                                includeValues: includeValues, includeMetadata: includeMetadata, ef: ef).matches
            }
        } else {
            do {
                matches = try index.query(id: id!, topK: topK, namespace: namespace, filter: filter,
                                          includeValues: includeValues, includeMetadata: includeMetadata, ef: ef).matches
            } catch .recordNotFound {
                matches = []  // Pinecone answers a query by an absent id with no matches
            } catch {
                throw APIError(error)
            }
        }
        return Reply { w in
            w.object { w in
                w.key("matches")
                w.array { w in
                    for m in matches {
                        w.object { w in
                            w.field("id", m.id)
                            w.key("score")
                            w.number(m.score)
                            if let values = m.values { w.key("values"); w.floats(values) }
                            if let sparse = m.sparseValues { w.key("sparseValues"); w.sparse(sparse) }
                            if let metadata = m.metadata { w.key("metadata"); w.metadata(metadata) }
                        }
                    }
                }
                w.field("namespace", namespace)
                w.key("usage")
                w.object { w in w.field("readUnits", 1) }
            }
        }
    }

    private func writeRecords(_ w: inout JSONWriter, _ records: [(String, Record)], namespace: String) {
        w.key("vectors")
        w.object { w in
            for (id, record) in records {
                w.key(id)
                w.object { w in
                    w.field("id", id)
                    w.key("values")
                    w.floats(record.values)
                    if let sparse = record.sparseValues { w.key("sparseValues"); w.sparse(sparse) }
                    if let m = record.metadata { w.key("metadata"); w.metadata(m) }
                }
            }
        }
        w.field("namespace", namespace)
        w.key("usage")
        w.object { w in w.field("readUnits", 1) }
    }

    /// `GET /vectors/fetch?ids=a&ids=b&namespace=ns` (absent ids are left
    /// out).
    func fetch(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let ids = r.parameters("ids")
        guard !ids.isEmpty else { throw .badRequest("query parameter \"ids\" is required (repeat it for several ids)") }
        let namespace = Self.namespace(r.parameter("namespace"))
        let records = try library { () throws(LodestoneError) -> [String: Record] in
            try index.fetch(ids: ids, namespace: namespace)
        }
        var seen = Set<String>()
        let ordered = ids.compactMap { id in seen.insert(id).inserted ? records[id].map { (id, $0) } : nil }
        return Reply { w in w.object { w in writeRecords(&w, ordered, namespace: namespace) } }
    }

    /// `POST /vectors/fetch_by_metadata`: records passing `filter`, `limit`
    /// (default 100) at a time, in id order, with a pagination token.
    func fetchByMetadata(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let body = try r.fields()
        let namespace = Self.namespace(try body.string("namespace"))
        let limit = try body.int("limit", in: 1...10_000) ?? 100
        let filter = try Self.filter(body)
        let token = try body.string("paginationToken").flatMap { $0.isEmpty ? nil : $0 }
        let page = try library { () throws(LodestoneError) -> IDPage in
            try index.listIDs(namespace: namespace, filter: filter, limit: limit, paginationToken: token)
        }
        let records = try library { () throws(LodestoneError) -> [String: Record] in
            try index.fetch(ids: page.ids, namespace: namespace)
        }
        let ordered = page.ids.compactMap { id in records[id].map { (id, $0) } }
        return Reply { w in
            w.object { w in
                writeRecords(&w, ordered, namespace: namespace)
                if let next = page.nextToken { w.key("pagination"); w.object { w in w.field("next", next) } }
            }
        }
    }

    /// `GET /vectors/list?namespace=&prefix=&limit=&paginationToken=`.
    func list(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let namespace = Self.namespace(r.parameter("namespace"))
        let limit = try r.intParameter("limit", in: 1...10_000) ?? 100
        let token = r.parameter("paginationToken").flatMap { $0.isEmpty ? nil : $0 }
        let page = try library { () throws(LodestoneError) -> IDPage in
            try index.listIDs(namespace: namespace, prefix: r.parameter("prefix") ?? "", limit: limit,
                              paginationToken: token)
        }
        return Reply { w in
            w.object { w in
                w.key("vectors")
                w.array { w in for id in page.ids { w.object { w in w.field("id", id) } } }
                if let next = page.nextToken { w.key("pagination"); w.object { w in w.field("next", next) } }
                w.field("namespace", namespace)
                w.key("usage")
                w.object { w in w.field("readUnits", 1) }
            }
        }
    }

    /// Record counts per namespace as clients name them (records stored
    /// under a literal "__default__", which the library and its imports
    /// allow, count with the default namespace), those passing `filter`
    /// when given, with the namespaces made empty by `POST /namespaces`.
    func namespaceCounts(_ index: Index, filter: Filter?) throws(APIError) -> [String: Int] {
        let stats = try library { () throws(LodestoneError) -> IndexStats in try index.describeStats() }
        var counts: [String: Int] = [:]
        for (ns, n) in stats.namespaces where n > 0 {
            let matching = try filter.map { (f) throws(APIError) -> Int in
                try library { () throws(LodestoneError) -> Int in try index.count(namespace: ns, filter: f) }
            } ?? n
            counts[Self.namespace(ns), default: 0] += matching
        }
        for ns in catalog.settings(index.name).namespaces where counts[ns] == nil { counts[ns] = 0 }
        return counts
    }

    /// `POST /describe_index_stats` (optionally with a filter).
    func stats(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let filter = r.method == .post ? try Self.filter(try r.fields()) : nil
        let counts = try namespaceCounts(index, filter: filter)
        return Reply { w in
            w.object { w in
                w.key("namespaces")
                w.object { w in
                    for ns in counts.keys.sorted() {
                        w.key(Self.reported(ns))
                        w.object { w in w.field("vectorCount", counts[ns]!) }
                    }
                }
                w.field("dimension", index.dimension)
                w.field("indexFullness", 0)
                w.field("totalVectorCount", counts.values.reduce(0, +))
                w.field("metric", index.metric.rawValue)
                w.field("vectorType", index.kind == .sparse ? "sparse" : "dense")
            }
        }
    }

    // MARK: The namespaces API (2025-10)

    private func writeNamespace(_ w: inout JSONWriter, _ name: String, count: Int) {
        w.object { w in
            w.field("name", Self.reported(name))
            w.field("record_count", String(count))
        }
    }

    func createNamespace(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let body = try r.fields()
        guard let given = try body.string("name"), !given.isEmpty else { throw .badRequest("\"name\" is required") }
        let name = Self.namespace(given)
        guard name.utf8.count <= 512 else { throw .badRequest("namespace names are at most 512 bytes") }
        guard try namespaceCounts(index, filter: nil)[name] == nil else {
            throw APIError(status: .conflict, code: "ALREADY_EXISTS", message: "namespace \"\(given)\" already exists")
        }
        _ = try catalog.update(index.name) { (s: inout PineconeSettings) throws(APIError) in s.namespaces.insert(name) }
        return Reply(.created) { w in writeNamespace(&w, name, count: 0) }
    }

    func listNamespaces(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let prefix = r.parameter("prefix") ?? ""
        let limit = try r.intParameter("limit", in: 1...10_000) ?? 100
        let after = r.parameter("paginationToken").flatMap { $0.isEmpty ? nil : $0 }
        let counts = try namespaceCounts(index, filter: nil)
        let names = counts.keys.map(Self.reported).filter { $0.hasPrefix(prefix) }.sorted()
            .filter { after == nil || $0 > after! }
        let page = Array(names.prefix(limit))
        return Reply { w in
            w.object { w in
                w.key("namespaces")
                w.array { w in for n in page { writeNamespace(&w, Self.namespace(n), count: counts[Self.namespace(n)] ?? 0) } }
                if names.count > limit, let last = page.last {
                    w.key("pagination")
                    w.object { w in w.field("next", last) }
                }
                w.field("total_count", names.count)
            }
        }
    }

    func describeNamespace(_ index: Index, _ given: String) throws(APIError) -> Reply {
        let name = Self.namespace(given)
        guard let count = try namespaceCounts(index, filter: nil)[name] else {
            throw .notFound("no namespace \"\(given)\" in index \"\(index.name)\"")
        }
        return Reply { w in writeNamespace(&w, name, count: count) }
    }

    func deleteNamespace(_ index: Index, _ given: String) async throws(APIError) -> Reply {
        let name = Self.namespace(given)
        guard try namespaceCounts(index, filter: nil)[name] != nil else {
            throw .notFound("no namespace \"\(given)\" in index \"\(index.name)\"")
        }
        try await writing { () throws(APIError) in
            _ = try library { () throws(LodestoneError) -> Int in try index.deleteAll(namespace: name) }
            _ = try self.catalog.update(index.name) { (s: inout PineconeSettings) throws(APIError) in
                s.namespaces.remove(name)
            }
        }
        return Reply(.accepted) { w in w.object { _ in } }
    }
}
