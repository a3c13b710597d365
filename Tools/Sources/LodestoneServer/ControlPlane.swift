#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
@_spi(LodestoneTools) import Lodestone

// The control plane: list, create, describe, configure and delete indexes
// (`/indexes`), answered in one shape that every Pinecone SDK decodes (see
// PROTOCOL.md, "Index descriptions").

extension PineconeService {
    /// Routes `/indexes...`, `/backups...`, `/collections...` and
    /// `/restore-jobs...`.
    func controlPlane(_ r: ServerRequest) async throws(APIError) -> Reply {
        let s = r.segments
        switch (r.method, s.count, s.first) {
        case (.get, 1, "indexes"): return listIndexes(r)
        case (.post, 1, "indexes"): return try await createIndex(r)
        case (_, 2, "indexes") where s[1] == "create-for-model":
            throw .notImplemented("Integrated embedding (create_index_for_model)")
        case (.get, 2, "indexes"): return try describeIndex(s[1], r)
        case (.delete, 2, "indexes"): return try await deleteIndex(s[1])
        case (.patch, 2, "indexes"): return try configureIndex(s[1], r)
        case (.post, 3, "indexes") where s[2] == "backups": return try await createBackup(index: s[1], r)
        case (.get, 3, "indexes") where s[2] == "backups": return try listBackups(index: s[1], r)
        case (.get, 1, "backups"): return try listBackups(index: nil, r)
        case (.get, 2, "backups"): return try describeBackup(s[1])
        case (.delete, 2, "backups"): return try await deleteBackup(s[1])
        case (.post, 3, "backups") where s[2] == "create-index": return try await restoreBackup(s[1], r)
        case (.get, 1, "restore-jobs"): return try listRestoreJobs(r)
        case (.get, 2, "restore-jobs"): return try describeRestoreJob(s[1])
        case (_, _, "collections"): throw .notImplemented("Collections (use backups)")
        case (_, _, "backup-schedules"), (_, 4, "indexes"): throw .notImplemented("Backup schedules")
        default: throw .notFound("no route for \(r.method) /\(s.joined(separator: "/"))")
        }
    }

    /// The data plane's base URL for `name`, with an explicit scheme so
    /// that every SDK keeps plain HTTP (see PROTOCOL.md, "Hosts").
    func host(of name: String, _ r: ServerRequest) -> String {
        "http://" + (configuration.publicHost ?? r.host) + "/" + Self.dataPrefix + "/" + name
    }

    /// An index description in the union shape: the 2025-10 fields
    /// (`dimension`, `metric`, `spec`) and the 2026-07 ones (`schema`,
    /// `deployment`) together, no nulls, `tags` only when there are some.
    func writeModel(_ w: inout JSONWriter, name: String, index: Index, _ r: ServerRequest) {
        let settings = catalog.settings(name)
        let metric = index.metric.rawValue
        w.object { w in
            w.field("name", name)
            let sparse = index.kind == .sparse
            if !sparse { w.field("dimension", index.dimension) }  // a sparse index has none
            w.field("metric", metric)
            w.field("vector_type", sparse ? "sparse" : "dense")
            w.field("host", host(of: name, r))
            w.key("spec")
            w.json(settings.spec)
            w.key("status")
            w.object { w in
                w.field("ready", true)
                w.field("state", "Ready")
            }
            w.field("deletion_protection", settings.deletionProtection ? "enabled" : "disabled")
            if !settings.tags.isEmpty {
                w.key("tags")
                w.object { w in for k in settings.tags.keys.sorted() { w.field(k, settings.tags[k]!) } }
            }
            w.key("schema")
            if sparse { w.sparseSchema() } else { w.denseSchema(dimension: index.dimension, metric: metric) }
            w.key("deployment")
            w.json(.object(settings.deployment))
            if settings.createdAt > 0 {
                w.field("created_at", Date(timeIntervalSince1970: settings.createdAt).formatted(.iso8601))
            }
            w.key("lodestone")
            w.object { w in
                w.field("kind", index.kind.rawValue)
                if index.kind == .hnsw { w.field("traversal", index.parameters.traversal.rawValue) }
                w.field("record_count", index.count)
                if let resident = index.residentBytesPerVector { w.field("resident_bytes_per_vector", resident) }
                if let field = index.textField { w.field("text_field", field) }
                if !index.embeddingModel.isEmpty { w.field("embedding_model", index.embeddingModel) }
            }
        }
    }

    func listIndexes(_ r: ServerRequest) -> Reply {
        var open: [(String, Index)] = []
        for name in database.listIndexes() {
            // An index deleted meanwhile, or held by another process, is left out.
            if let index = try? database.index(name, durability: configuration.durability) { open.append((name, index)) }
        }
        return Reply { w in
            w.object { w in
                w.key("indexes")
                w.array { w in for (name, index) in open { writeModel(&w, name: name, index: index, r) } }
            }
        }
    }

    func describeIndex(_ name: String, _ r: ServerRequest) throws(APIError) -> Reply {
        let index = try openIndex(name)
        return Reply { w in writeModel(&w, name: name, index: index, r) }
    }

    /// `POST /indexes`, in either request family: 2025-10's `dimension`,
    /// `metric`, `vector_type` and `spec`, or 2026-07's `schema` and
    /// `deployment`.
    func createIndex(_ r: ServerRequest) async throws(APIError) -> Reply {
        let body = try r.fields()
        guard let name = try body.string("name") else { throw .badRequest("\"name\" is required") }
        guard Database.isValidName(name) else {
            throw .badRequest("index name \"\(name)\" is invalid: use 1-45 lowercase letters, digits and hyphens, "
                              + "starting and ending with a letter or digit")
        }
        var dimension = try body.int("dimension", in: 1...65_536)
        var metricName = try body.string("metric")
        var deployment = PineconeSettings.defaultDeployment
        var sparse = false
        switch try body.string("vector_type") {
        case nil, "dense"?: break
        case "sparse"?: sparse = true
        case let other?: throw .badRequest("vector_type \"\(other)\" is not one of dense, sparse")
        }
        if let schema = try body.object("schema"), let fields = try schema.object("fields") {
            var dense = 0
            for (fieldName, value) in fields.values {
                let f = try Fields(value, place: "schema field \"\(fieldName)\"")
                switch try f.string("type") {
                case "dense_vector":
                    dense += 1
                    dimension = try f.int("dimension", in: 1...65_536) ?? dimension
                    metricName = try f.string("metric") ?? metricName
                case "sparse_vector":
                    sparse = true
                    metricName = try f.string("metric") ?? metricName
                case nil:
                    continue  // a metadata field's "filterable": every field is filterable here
                case let other?:
                    throw .badRequest("schema field type \"\(other)\" is not supported (dense_vector, sparse_vector)")
                }
            }
            guard dense <= 1 else { throw .badRequest("an index holds one dense_vector field, not \(dense)") }
            guard dense == 0 || !sparse else {
                throw .badRequest("an index holds a dense_vector or a sparse_vector field, not both "
                                  + "(a dense index takes sparse values beside its vectors)")
            }
        }
        if let d = try body.object("deployment") { deployment = try PineconeSettings.deployment(from: d) }
        if let spec = try body.object("spec") { deployment = try PineconeSettings.deployment(fromSpec: spec) }
        if sparse {
            guard dimension == nil else { throw .badRequest("a sparse index has no \"dimension\"") }
            guard metricName == nil || metricName == "dotproduct" else {
                throw .badRequest("a sparse index's metric is dotproduct, not \"\(metricName!)\"")
            }
        } else if dimension == nil {
            throw .badRequest("\"dimension\" is required for a dense index")
        }
        let metricText = metricName ?? (sparse ? "dotproduct" : "cosine")
        guard let metric = Metric(name: metricText), metricText == metric.rawValue || metricText == "dotproduct" else {
            throw .badRequest("metric \"\(metricText)\" is not one of cosine, euclidean, dotproduct")
        }
        var newSettings = PineconeSettings(deployment: deployment, createdAt: Date().timeIntervalSince1970)
        newSettings.deletionProtection = try Self.deletionProtection(body) ?? false
        newSettings.tags = try Self.tags(body, merging: [:])
        var newOptions = try Self.lodestoneOptions(body)
        newOptions.durability = configuration.durability
        if sparse { newOptions.kind = .sparse }
        let settings = newSettings, options = newOptions, dense = dimension ?? 0
        let index = try await writing { () throws(APIError) -> Index in
            let index = try library { () throws(LodestoneError) -> Index in
                try self.database.createIndex(name: name, dimension: dense, metric: metric, options: options)
            }
            try self.catalog.store(name, settings)
            return index
        }
        return Reply(.created) { w in writeModel(&w, name: name, index: index, r) }
    }

    /// Lodestone's own options, under `"lodestone"` in a create request:
    /// `kind` (`hnsw` or `flat`), `m`, `ef_construction`, `ef_search`,
    /// `traversal` (`exact`, `quantized` or `compact`), `text_field` (a metadata field
    /// searched by BM25: `"text"` in a query).
    static func lodestoneOptions(_ body: Fields) throws(APIError) -> IndexOptions {
        var options = IndexOptions()
        guard let o = try body.object("lodestone") else { return options }
        if let kind = try o.string("kind") {
            guard let k = IndexKind(rawValue: kind), k != .sparse else {
                throw .badRequest("lodestone.kind must be hnsw or flat (a sparse index is vector_type sparse)")
            }
            options.kind = k
        }
        if let m = try o.int("m", in: 2...256) { options.hnsw.m = m }
        if let ef = try o.int("ef_construction", in: 1...10_000) { options.hnsw.efConstruction = ef }
        if let ef = try o.int("ef_search", in: 1...10_000) { options.hnsw.efSearch = ef }
        if let walk = try o.string("traversal") {
            guard let t = HNSWParameters.Traversal(rawValue: walk) else {
                throw .badRequest("lodestone.traversal \"\(walk)\" is not one of exact, quantized, compact")
            }
            options.hnsw.traversal = t
        }
        if let field = try o.string("text_field") {
            guard !field.isEmpty, field.utf8.count <= 512 else {
                throw .badRequest("lodestone.text_field must be a metadata key of 1 to 512 bytes")
            }
            options.textField = field
        }
        return options
    }

    /// A deployment field a configure request may change, checked (the
    /// value is echoed in every later description, which SDKs decode).
    static func deploymentField(_ name: String, _ value: JSONValue) throws(APIError) -> JSONValue? {
        switch (name, value) {
        case (_, .null): return nil
        case ("replicas", .number(let n)), ("shards", .number(let n)), ("pods", .number(let n)):
            guard n == n.rounded(), (1...100).contains(n) else { throw .badRequest("\"\(name)\" must be an integer in 1...100") }
            return value
        case ("pod_type", .string), ("environment", .string), ("cloud", .string), ("region", .string):
            return value
        case ("replicas", _), ("shards", _), ("pods", _):
            throw .badRequest("\"\(name)\" must be an integer in 1...100")
        case ("pod_type", _), ("environment", _), ("cloud", _), ("region", _):
            throw .badRequest("\"\(name)\" must be a string")
        default:
            throw .badRequest("deployment field \"\(name)\" cannot be configured (replicas, shards, pod_type, "
                              + "environment, cloud, region can)")
        }
    }

    static func deletionProtection(_ body: Fields) throws(APIError) -> Bool? {
        guard let v = try body.string("deletion_protection") else { return nil }
        switch v {
        case "enabled": return true
        case "disabled": return false
        default: throw .badRequest("deletion_protection must be \"enabled\" or \"disabled\", not \"\(v)\"")
        }
    }

    /// Tags merged into `current`: an empty value removes a tag, as
    /// Pinecone's configure does.
    static func tags(_ body: Fields, merging current: [String: String]) throws(APIError) -> [String: String] {
        guard let t = try body.object("tags") else { return current }
        var out = current
        for (k, v) in t.values {
            guard case let .string(s) = v else { throw .badRequest("tag \"\(k)\" must have a string value") }
            guard !k.isEmpty, k.utf8.count <= 80, s.utf8.count <= 120 else {
                throw .badRequest("tag keys are 1-80 bytes and values at most 120 bytes")
            }
            out[k] = s.isEmpty ? nil : s
        }
        return out
    }

    /// `PATCH /indexes/{name}`: deletion protection and tags; replicas, pod
    /// types and read capacity are accepted and kept in the deployment
    /// (one machine serves every index).
    func configureIndex(_ name: String, _ r: ServerRequest) throws(APIError) -> Reply {
        let index = try openIndex(name)
        let body = try r.fields()
        let protection = try Self.deletionProtection(body)
        if body.raw("embed") != nil { throw .notImplemented("Integrated embedding (embed)") }
        _ = try catalog.update(name) { (s: inout PineconeSettings) throws(APIError) in
            if let protection { s.deletionProtection = protection }
            s.tags = try Self.tags(body, merging: s.tags)
            for fields in [try body.object("deployment"), try body.object("spec")?.object("pod")] {
                guard let fields else { continue }
                for (k, v) in fields.values where k != "deployment_type" {
                    s.deployment[k] = try Self.deploymentField(k, v)
                }
            }
        }
        return Reply(.accepted) { w in writeModel(&w, name: name, index: index, r) }
    }

    /// `DELETE /indexes/{name}`: synchronous (the next describe is 404), and
    /// refused while deletion protection is on.
    func deleteIndex(_ name: String) async throws(APIError) -> Reply {
        _ = try openIndex(name)
        guard !catalog.settings(name).deletionProtection else {
            throw APIError(status: .forbidden, code: "FORBIDDEN",
                           message: "deletion protection is enabled for index \"\(name)\": "
                               + "configure it with deletion_protection \"disabled\" first")
        }
        try await writing { () throws(APIError) in
            try library { () throws(LodestoneError) in try self.database.deleteIndex(name) }
            self.catalog.remove(name)
        }
        return Reply(.accepted) { w in w.object { _ in } }
    }

    /// The open index `name`; 404 when there is none.
    func openIndex(_ name: String) throws(APIError) -> Index {
        guard Database.isValidName(name) else { throw .notFound("no index named \"\(name)\" exists") }
        return try library { () throws(LodestoneError) -> Index in
            try database.index(name, durability: configuration.durability)
        }
    }
}
