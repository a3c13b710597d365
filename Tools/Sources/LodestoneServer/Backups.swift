#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
@_spi(LodestoneTools) import Lodestone
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a backup is: a snapshot of an index (``Index/snapshot(to:)``) kept
/// in `<db>/.backups/<id>/index/`, described by `backup.json` beside it.
struct BackupRecord: Sendable {
    var id: String
    var sourceIndex: String
    var name: String?
    var description: String?
    var dimension: Int
    var metric: String
    var recordCount: Int
    var namespaceCount: Int
    var sizeBytes: Int
    var cloud: String
    var region: String
    var createdAt: Double

    var json: JSONValue {
        var o: [String: JSONValue] = [
            "backup_id": .string(id), "source_index_name": .string(sourceIndex), "dimension": .number(Double(dimension)),
            "metric": .string(metric), "record_count": .number(Double(recordCount)),
            "namespace_count": .number(Double(namespaceCount)), "size_bytes": .number(Double(sizeBytes)),
            "cloud": .string(cloud), "region": .string(region), "created_at": .number(createdAt),
        ]
        if let name { o["name"] = .string(name) }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

}

// In an extension, so the struct keeps its memberwise initialiser.
extension BackupRecord {
    init(json: JSONValue) throws(APIError) {
        let f = try Fields(json, place: "backup.json")
        func number(_ k: String) -> Double { if case let .number(n) = f.raw(k) { return n } else { return 0 } }
        id = try f.string("backup_id") ?? ""
        sourceIndex = try f.string("source_index_name") ?? ""
        name = try f.string("name")
        description = try f.string("description")
        dimension = Int(number("dimension"))
        metric = try f.string("metric") ?? "cosine"
        recordCount = Int(number("record_count"))
        namespaceCount = Int(number("namespace_count"))
        sizeBytes = Int(number("size_bytes"))
        cloud = try f.string("cloud") ?? "aws"
        region = try f.string("region") ?? "us-east-1"
        createdAt = number("created_at")
    }

    /// Pinecone's BackupModel (every SDK's required fields, no nulls).
    func write(_ w: inout JSONWriter) {
        w.object { w in
            w.field("backup_id", id)
            w.field("source_index_name", sourceIndex)
            w.field("source_index_id", sourceIndex)
            w.field("status", "Ready")
            w.field("cloud", cloud)
            w.field("region", region)
            if let name { w.field("name", name) }
            if let description { w.field("description", description) }
            w.field("dimension", dimension)
            w.field("metric", metric)
            w.field("record_count", recordCount)
            w.field("namespace_count", namespaceCount)
            w.field("size_bytes", sizeBytes)
            w.field("created_at", isoDate(createdAt))
            w.key("schema")
            w.denseSchema(dimension: dimension, metric: metric)
        }
    }
}

func isoDate(_ seconds: Double) -> String { Date(timeIntervalSince1970: seconds).formatted(.iso8601) }

/// A finished restore (restores are synchronous: the index exists when
/// the request returns).
struct RestoreJob: Sendable {
    var id: String
    var backupID: String
    var target: String
    var createdAt: Double

    func write(_ w: inout JSONWriter) {
        w.object { w in
            w.field("restore_job_id", id)
            w.field("backup_id", backupID)
            w.field("target_index_name", target)
            w.field("target_index_id", target)
            w.field("status", "Completed")
            w.field("created_at", isoDate(createdAt))
            w.field("completed_at", isoDate(createdAt))
            w.key("percent_complete")
            w.number(100.0)
        }
    }
}

/// The backups in `<db>/.backups/`, and the restores made this run.
final class BackupStore: Sendable {
    let directory: String
    private let restores = Mutex<[RestoreJob]>([])

    init(database: String) throws(APIError) {
        directory = database + "/.backups"
        try makeServerDirectory(directory)
        // A backup's folder is listed once its backup.json is written (last);
        // one without it is what a crash mid-backup left: never listed, so
        // remove it rather than keep its files forever.
        for id in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where !id.hasPrefix(".") && !FileManager.default.fileExists(atPath: path(id) + "/backup.json") {
            remove(id)
        }
    }

    func path(_ id: String) -> String { directory + "/" + id }

    /// Every complete backup (one whose `backup.json` was written last),
    /// oldest first.
    func all() -> [BackupRecord] {
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return ids.compactMap { id in try? record(id) }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    func record(_ id: String) throws(APIError) -> BackupRecord {
        guard !id.contains("/"), !id.hasPrefix("."),
              let data = FileManager.default.contents(atPath: path(id) + "/backup.json") else {
            throw .notFound("no backup with id \"\(id)\"")
        }
        guard let json = try? JSONValue.parse(bytes: data) else {
            throw APIError(status: .internalServerError, code: "UNKNOWN", message: "backup \(id)'s backup.json is not JSON")
        }
        return try BackupRecord(json: json)
    }

    func store(_ record: BackupRecord) throws(APIError) {
        var w = JSONWriter()
        w.json(record.json)
        do {
            try StorageIO.replaceFile(path(record.id) + "/backup.json", with: w.bytes)
        } catch {
            throw APIError(status: .internalServerError, code: "UNKNOWN", message: "cannot write backup \(record.id): \(error)")
        }
    }

    func remove(_ id: String) {
        try? FileManager.default.removeItem(atPath: path(id))
    }

    func addRestore(_ job: RestoreJob) { restores.withLock { $0.append(job) } }
    var restoreJobs: [RestoreJob] { restores.withLock { $0 } }
}

extension PineconeService {
    /// `POST /indexes/{name}/backups`: a consistent snapshot, taken while
    /// the index keeps serving (its segment is hard-linked, not copied).
    func createBackup(index name: String, _ r: ServerRequest) async throws(APIError) -> Reply {
        let index = try openIndex(name)
        let body = try r.fields()
        let settings = catalog.settings(name)
        let id = "bk-" + UUID().uuidString.lowercased()
        let backupName = try body.string("name"), description = try body.string("description")
        let backup = try await writing { () throws(APIError) -> BackupRecord in
            let target = self.backups.path(id)
            do throws(LodestoneError) {
                try index.snapshot(to: target + "/index")
            } catch {
                self.backups.remove(id)
                throw APIError(error)
            }
            let stats = try library { () throws(LodestoneError) -> IndexStats in try index.describeStats() }
            let size = (try? FileManager.default.contentsOfDirectory(atPath: target + "/index"))?.reduce(0) { sum, file in
                sum + (StorageIO.fileSize(target + "/index/" + file) ?? 0)
            } ?? 0
            func text(_ k: String, _ fallback: String) -> String {
                if case let .string(s)? = settings.deployment[k] { return s } else { return fallback }
            }
            let record = BackupRecord(id: id, sourceIndex: name, name: backupName, description: description,
                                      dimension: index.dimension, metric: index.metric.rawValue,
                                      recordCount: stats.totalRecordCount,
                                      namespaceCount: stats.namespaces.filter { $0.value > 0 }.count, sizeBytes: size,
                                      cloud: text("cloud", "aws"), region: text("region", "us-east-1"),
                                      createdAt: Date().timeIntervalSince1970)
            try self.backups.store(record)
            return record
        }
        return Reply(.created) { w in backup.write(&w) }
    }

    /// `GET /backups` and `GET /indexes/{name}/backups`.
    func listBackups(index name: String?, _ r: ServerRequest) throws(APIError) -> Reply {
        if let name { _ = try openIndex(name) }
        let limit = try r.intParameter("limit", in: 1...100) ?? 100
        let after = r.parameter("paginationToken").flatMap { $0.isEmpty ? nil : $0 }
        var all = backups.all().filter { name == nil || $0.sourceIndex == name }
        if let after, let i = all.firstIndex(where: { $0.id == after }) { all = Array(all[(i + 1)...]) }
        return Reply { w in
            w.page(all.prefix(limit), more: all.count > limit, next: \.id) { w, backup in backup.write(&w) }
        }
    }

    func describeBackup(_ id: String) throws(APIError) -> Reply {
        let backup = try backups.record(id)
        return Reply { w in backup.write(&w) }
    }

    func deleteBackup(_ id: String) async throws(APIError) -> Reply {
        _ = try backups.record(id)
        try await writing { () throws(APIError) in self.backups.remove(id) }
        return Reply(.accepted) { w in w.object { _ in } }
    }

    /// `POST /backups/{id}/create-index`: a new index from the snapshot,
    /// without re-inserting a vector. It is ready when this returns.
    func restoreBackup(_ id: String, _ r: ServerRequest) async throws(APIError) -> Reply {
        let backup = try backups.record(id)
        let body = try r.fields()
        guard let name = try body.string("name") else { throw .badRequest("\"name\" is required") }
        guard Database.isValidName(name) else { throw .badRequest("index name \"\(name)\" is invalid") }
        var newSettings = catalog.settings(backup.sourceIndex)
        newSettings.createdAt = Date().timeIntervalSince1970
        newSettings.deletionProtection = try Self.deletionProtection(body) ?? false
        newSettings.tags = try Self.tags(body, merging: [:])
        let settings = newSettings
        let job = RestoreJob(id: "rj-" + UUID().uuidString.lowercased(), backupID: id, target: name,
                             createdAt: settings.createdAt)
        let snapshot = backups.path(id) + "/index"
        let durability = configuration.durability
        try await writing { () throws(APIError) in
            _ = try library { () throws(LodestoneError) -> Index in
                try self.database.restoreIndex(name: name, from: snapshot, durability: durability)
            }
            try self.catalog.store(name, settings)
        }
        backups.addRestore(job)
        return Reply(.accepted) { w in
            w.object { w in
                w.field("restore_job_id", job.id)
                w.field("index_id", name)
            }
        }
    }

    func listRestoreJobs(_ r: ServerRequest) throws(APIError) -> Reply {
        let jobs = backups.restoreJobs
        return Reply { w in w.page(jobs[...], more: false, next: \.id) { w, job in job.write(&w) } }
    }

    func describeRestoreJob(_ id: String) throws(APIError) -> Reply {
        guard let job = backups.restoreJobs.first(where: { $0.id == id }) else {
            throw .notFound("no restore job with id \"\(id)\"")
        }
        return Reply { w in job.write(&w) }
    }
}
