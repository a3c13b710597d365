#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
@_spi(LodestoneTools) import Lodestone
import Synchronization

/// One bulk import: a `file://` URI of gzip'd JSON Lines (as `lodestone
/// export` writes them), or a directory of such files, read into an index
/// in the background.
struct ImportJob: Sendable {
    var id: String
    var index: String
    var uri: String
    var status = "Pending"
    var createdAt: Double
    var finishedAt: Double?
    var percentComplete = 0.0
    var recordsImported = 0
    var error: String?
    var cancelRequested = false

    var isFinished: Bool { ["Completed", "Failed", "Cancelled"].contains(status) }

    /// Pinecone's ImportModel (camelCase).
    func write(_ w: inout JSONWriter) {
        w.object { w in
            w.field("id", id)
            w.field("uri", uri)
            w.field("status", status)
            w.field("createdAt", isoDate(createdAt))
            if let finishedAt { w.field("finishedAt", isoDate(finishedAt)) }
            w.key("percentComplete")
            w.number(percentComplete)
            w.field("recordsImported", recordsImported)
            if let error { w.field("error", error) }
        }
    }
}

/// The imports of this run, by id (numbered from 1, as Pinecone's are).
final class ImportJobs: Sendable {
    private let jobs = Mutex<(next: Int, byID: [String: ImportJob])>((1, [:]))
    private let queue = DispatchQueue(label: "lodestone.serve.imports")

    func add(index: String, uri: String) -> ImportJob {
        jobs.withLock { state in
            let job = ImportJob(id: String(state.next), index: index, uri: uri, createdAt: Date().timeIntervalSince1970)
            state.next += 1
            state.byID[job.id] = job
            return job
        }
    }

    func job(_ id: String) -> ImportJob? { jobs.withLock { $0.byID[id] } }

    func all(index: String) -> [ImportJob] {
        jobs.withLock { Array($0.byID.values) }.filter { $0.index == index }.sorted { Int($0.id)! < Int($1.id)! }
    }

    func update(_ id: String, _ change: (inout ImportJob) -> Void) {
        jobs.withLock { state in
            if var job = state.byID[id] {
                change(&job)
                state.byID[id] = job
            }
        }
    }

    /// Runs imports one at a time, in the order they were started.
    func run(_ body: @escaping @Sendable () -> Void) { queue.async(execute: body) }

    /// Cancels pending imports and asks the running one to stop after its
    /// current batch, and waits for it.
    func cancelAll() {
        jobs.withLock { state in
            for id in state.byID.keys where !state.byID[id]!.isFinished {
                state.byID[id]!.cancelRequested = true
                if state.byID[id]!.status == "Pending" { state.byID[id]!.status = "Cancelled" }
            }
        }
        queue.sync {}
    }
}

extension PineconeService {
    /// The files a `file://` URI names: the file itself, or a directory's
    /// `.jsonl.gz`, `.jsonl` and `.gz` files in name order.
    static func importFiles(_ uri: String) throws(APIError) -> [String] {
        guard uri.hasPrefix("file://") else {
            throw .badRequest("import URI \"\(uri)\": only file:// URIs are supported (a gzip'd JSON Lines file as "
                              + "`lodestone export` writes, or a directory of them)")
        }
        let path = try ServerRequest.decode(uri.dropFirst("file://".count), plusIsSpace: false)
        guard FileManager.default.fileExists(atPath: path) else {
            throw .badRequest("import URI \"\(uri)\": \(path) does not exist on the server's machine")
        }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [path] }
        let names = entries
            .filter { $0.hasSuffix(".jsonl.gz") || $0.hasSuffix(".jsonl") || $0.hasSuffix(".gz") }.sorted()
        guard !names.isEmpty else { throw .badRequest("import URI \"\(uri)\": the directory holds no .jsonl.gz files") }
        return names.map { path + "/" + $0 }
    }

    /// `POST /bulk/imports`: checks the URI, then imports in the
    /// background. `errorMode.onError` "continue" skips bad lines; "abort"
    /// (the default) stops at the first, before storing anything of that
    /// file.
    func startImport(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let body = try r.fields()
        guard let uri = try body.string("uri") else { throw .badRequest("\"uri\" is required") }
        let onError = try body.object("errorMode")?.string("onError") ?? "abort"
        guard ["continue", "abort"].contains(onError) else {
            throw .badRequest("errorMode.onError must be \"continue\" or \"abort\", not \"\(onError)\"")
        }
        let files = try Self.importFiles(uri)
        let job = imports.add(index: index.name, uri: uri)
        let name = index.name, database = database, imports = imports, logger = logger
        imports.run {
            guard imports.job(job.id)?.isFinished == false else { return }  // cancelled while pending
            imports.update(job.id) { $0.status = "InProgress" }
            var imported = 0
            var failure: String? = nil
            var stopped = false
            for (n, file) in files.enumerated() {
                // Deleted meanwhile: fail, never create it anew with defaults.
                guard (try? database.index(name)) != nil else {
                    failure = "index \"\(name)\" was deleted during the import"
                    break
                }
                do {
                    let report = try database.importRecords(
                        from: file, into: name, skipBadLines: onError == "continue",
                        progress: { p in
                            let share = p.phase == "validate" ? 0.0 : 0.5
                            imports.update(job.id) { $0.recordsImported = imported + p.records; $0.percentComplete =
                                min(99, 100 * (Double(n) + share) / Double(files.count)) }
                        },
                        shouldStop: { imports.job(job.id)?.cancelRequested ?? true })
                    imported += report.records
                    if report.stopped { stopped = true; break }
                } catch {
                    failure = "\(file): \(error)"
                    break
                }
            }
            imports.update(job.id) { j in
                j.recordsImported = imported
                j.finishedAt = Date().timeIntervalSince1970
                if let failure { j.status = "Failed"; j.error = failure }
                else if stopped || j.cancelRequested { j.status = "Cancelled" }
                else { j.status = "Completed"; j.percentComplete = 100 }
            }
            logger.info("import \(job.id) into \(name): \(imports.job(job.id)?.status ?? "?"), \(imported) records")
        }
        return Reply { w in w.object { w in w.field("id", job.id) } }
    }

    func listImports(_ index: Index, _ r: ServerRequest) throws(APIError) -> Reply {
        let limit = try r.intParameter("limit", in: 1...100) ?? 100
        let after = r.parameter("paginationToken").flatMap { Int($0) } ?? 0
        let all = imports.all(index: index.name).filter { Int($0.id)! > after }
        return Reply { w in
            w.page(all.prefix(limit), more: all.count > limit, next: \.id) { w, job in job.write(&w) }
        }
    }

    func describeImport(_ index: Index, _ id: String) throws(APIError) -> Reply {
        guard let job = imports.job(id), job.index == index.name else { throw .notFound("no import with id \"\(id)\"") }
        return Reply { w in job.write(&w) }
    }

    /// `DELETE /bulk/imports/{id}`: a pending import never starts; a
    /// running one stops after its current batch (what it stored stays).
    func cancelImport(_ index: Index, _ id: String) throws(APIError) -> Reply {
        guard let job = imports.job(id), job.index == index.name else { throw .notFound("no import with id \"\(id)\"") }
        imports.update(id) { j in
            guard !j.isFinished else { return }
            j.cancelRequested = true
            if j.status == "Pending" { j.status = "Cancelled"; j.finishedAt = Date().timeIntervalSince1970 }
        }
        return .empty
    }
}
