#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Progress of a long import or export.
public struct TransferProgress: Sendable {
    /// Lines read (import) or records written (export) so far.
    public var lines: Int
    /// Records stored (import) or written (export) so far.
    public var records: Int
    /// Which pass: "validate" or "import" for imports, "export" for exports.
    public var phase: String
}

/// What ``Database/importRecords(from:into:dimension:metric:embeddingModel:options:skipBadLines:batchSize:progress:shouldStop:)`` did.
public struct ImportReport: Sendable, Hashable {
    /// Records upserted.
    public var records: Int
    /// Lines skipped as malformed (only with `skipBadLines`).
    public var skippedLines: Int
    /// The first few skipped lines' errors.
    public var skippedErrors: [String]
    /// Whether the index was created by the import.
    public var createdIndex: Bool
    /// Whether `shouldStop` ended the import early (the batches stored
    /// before it stay stored).
    public var stopped = false
}

/// One line of a Pinecone-shaped JSON Lines export.
private struct RecordLine {
    var id: String
    var values: [Float]
    var metadata: JSONValue?
    var sparseValues: JSONValue?
    var namespace: String?

    /// Why a line is not a record: what the caller's message says.
    struct Wrong: Error { let reason: String }

    /// Reads a line's JSON (other fields are ignored).
    init(line: [UInt8]) throws(Wrong) {
        let json: JSONValue
        do { json = try JSONValue.parse(bytes: line) } catch { throw Wrong(reason: "invalid JSON: \(error)") }
        guard case let .object(fields) = json else { throw Wrong(reason: "the line is not an object") }
        guard let idValue = fields["id"] else { throw Wrong(reason: "missing \"id\"") }
        guard case let .string(id) = idValue else { throw Wrong(reason: "\"id\" is not a string") }
        guard let valuesValue = fields["values"] else { throw Wrong(reason: "missing \"values\"") }
        guard case let .array(items) = valuesValue else { throw Wrong(reason: "\"values\" is not an array of numbers") }
        var values = [Float]()
        values.reserveCapacity(items.count)
        for item in items {
            guard case let .number(n) = item else { throw Wrong(reason: "\"values\" is not an array of numbers") }
            values.append(Float(n))
        }
        var namespace: String? = nil
        switch fields["namespace"] {
        case nil, .null?: break
        case let .string(ns)?: namespace = ns
        default: throw Wrong(reason: "\"namespace\" is not a string")
        }
        self.id = id
        self.values = values
        self.metadata = fields["metadata"]
        self.sparseValues = fields["sparse_values"] ?? fields["sparseValues"]
        self.namespace = namespace
    }
}

extension Index {
    /// Writes every record of every namespace to `path` as gzip-compressed
    /// JSON Lines in Pinecone's record shape, one record per line:
    /// `{"id": …, "values": […], "sparse_values": {"indices": […],
    /// "values": […]}, "metadata": {…}, "namespace": …}` (`sparse_values`
    /// left out when absent, `metadata` when empty). Floats are written in their
    /// shortest round-tripping form, so importing the file back stores the
    /// same bits. The file appears atomically when complete.
    /// - Returns: the number of records written.
    @discardableResult
    ///
    /// `shouldStop`, asked every 1,000 records, ends the export early with
    /// ``LodestoneError/cancelled(operation:)`` and no file.
    public func export(to path: String, progress: ((TransferProgress) -> Void)? = nil,
                       shouldStop: (() -> Bool)? = nil) throws(LodestoneError) -> Int {
        let writer = try GzipWriter(path: path)
        var written = 0
        var json = JSONWriter(capacity: 1 << 20 + 1 << 16)
        try forEachRecord { (namespace: String, record: Record) throws(LodestoneError) in
            json.object { w in
                w.field("id", record.id)
                w.key("values")
                w.floats(record.values)
                if let s = record.sparseValues {
                    w.key("sparse_values")
                    w.sparse(s)
                }
                if let m = record.metadata, !m.isEmpty {
                    w.key("metadata")
                    w.metadata(m)
                }
                w.field("namespace", namespace)
            }
            json.endLine()
            written += 1
            if written % 1_000 == 0, shouldStop?() == true {
                throw .cancelled(operation: "export to \(path), after \(written) records (no file written)")
            }
            if json.bytes.count > 1 << 20 {
                try writer.write(json.bytes)
                json.reset()
                progress?(TransferProgress(lines: written, records: written, phase: "export"))
            }
        }
        try writer.write(json.bytes)
        try writer.finish()
        progress?(TransferProgress(lines: written, records: written, phase: "export"))
        return written
    }
}

extension Database {
    /// Imports a JSON Lines file (gzip-compressed or plain) of records in
    /// Pinecone's shape (`id`, `values`, optional `sparse_values`,
    /// `metadata` and `namespace`; other fields are ignored) into the index `name`,
    /// creating it when missing (with `dimension`, or the first record's
    /// length, and `metric`, `embeddingModel`, `options`) or merging into it
    /// (records with an existing id replace it).
    ///
    /// Memory stays constant whatever the file's size: a first pass
    /// validates every line (JSON, id, dimension, finite values, metadata)
    /// without storing anything, so a bad line is reported with its number
    /// before anything is written; unless `skipBadLines`, which skips and
    /// counts them. A second pass upserts in batches of `batchSize`;
    /// `shouldStop`, asked before each batch (and every 10,000 lines while
    /// validating), ends it early when it says so.
    public func importRecords(from path: String, into name: String, dimension: Int? = nil, metric: Metric = .cosine,
                              embeddingModel: String = "", options: IndexOptions = IndexOptions(),
                              skipBadLines: Bool = false, batchSize: Int = 1_000,
                              progress: ((TransferProgress) -> Void)? = nil,
                              shouldStop: (() -> Bool)? = nil) throws(LodestoneError) -> ImportReport {
        let existing: Index? = listIndexes().contains(name) ? try index(name) : nil
        if let existing, !embeddingModel.isEmpty, embeddingModel != existing.embeddingModel {
            throw .embeddingModelMismatch(expected: existing.embeddingModel, actual: embeddingModel)
        }
        var expectedDimension = existing?.dimension ?? dimension
        let indexMetric = existing?.metric ?? metric

        // Pass 1: validate.
        var bad: Set<Int> = []
        var errors: [String] = []
        var valid = 0
        // A text index derives its sparse values from the text: a file's are left out.
        let textField = existing?.textField ?? options.textField
        func parse(_ line: [UInt8], number: Int) throws(LodestoneError) -> (Record, String)? {
            if Index.isBlank(line) { return nil }
            let decoded: RecordLine
            do {
                decoded = try RecordLine(line: line)
            } catch {
                throw .malformedLine(path: path, line: number, reason: "not a record in Pinecone's shape (\(error.reason))")
            }
            var metadata: Metadata? = nil
            var sparse: SparseVector? = nil
            do throws(LodestoneError) {
                if let m = decoded.metadata, m != .null { metadata = try Metadata.from(json: m) }
                if let s = decoded.sparseValues, s != .null { sparse = try SparseVector(json: s, field: "sparse_values") }
                try Index.validateID(decoded.id)
                try Index.validateNamespace(decoded.namespace ?? "")
                if let m = metadata { try MetadataCodec.validate(m) }
                if let textField { _ = try Index.text(of: metadata, field: textField) }
                if let d = expectedDimension, decoded.values.count != d {
                    throw LodestoneError.dimensionMismatch(expected: d, actual: decoded.values.count)
                }
                for (i, v) in decoded.values.enumerated() where !v.isFinite {
                    throw LodestoneError.nonFiniteComponent(index: i, value: v)
                }
                if indexMetric == .cosine && decoded.values.allSatisfy({ $0 == 0 }) { throw LodestoneError.zeroVector }
            } catch {
                throw .malformedLine(path: path, line: number, reason: "\(error)")
            }
            return (Record(id: decoded.id, values: decoded.values, metadata: metadata,
                           sparseValues: textField == nil ? sparse : nil),
                    decoded.namespace ?? "")
        }
        do {
            let reader = try GzipLineReader(path: path)
            while let line = try reader.nextLine() {
                do throws(LodestoneError) {
                    if let (record, _) = try parse(line, number: reader.lineNumber) {
                        if expectedDimension == nil { expectedDimension = record.values.count }
                        valid += 1
                    }
                } catch {
                    guard skipBadLines else { throw error }
                    bad.insert(reader.lineNumber)
                    if errors.count < 10 { errors.append("\(error)") }
                }
                if reader.lineNumber % 10_000 == 0, shouldStop?() == true {
                    // Stopped while validating: nothing was stored.
                    return ImportReport(records: 0, skippedLines: bad.count, skippedErrors: errors, createdIndex: false,
                                        stopped: true)
                }
                if reader.lineNumber % 10_000 == 0 {
                    progress?(TransferProgress(lines: reader.lineNumber, records: 0, phase: "validate"))
                }
            }
        }
        guard let d = expectedDimension else {
            throw .malformedFile(path: path, reason: "holds no records, and no dimension was given to create the index")
        }

        // Pass 2: upsert, in batches per namespace run.
        var created = false
        let target: Index
        if let existing { target = existing } else {
            target = try createIndex(name: name, dimension: d, metric: metric, embeddingModel: embeddingModel,
                                     options: options)
            created = true
        }
        let reader = try GzipLineReader(path: path)
        var batch: [Record] = [], batchNamespace = "", stored = 0
        func flush() throws(LodestoneError) {
            guard !batch.isEmpty else { return }
            // Within a batch an id may repeat (a file may hold updates):
            // the later line wins, as it would one line at a time.
            var last: [String: Int] = [:]
            for (i, r) in batch.enumerated() { last[r.id] = i }
            let unique = batch.enumerated().filter { last[$0.element.id] == $0.offset }.map(\.element)
            try target.upsert(unique, namespace: batchNamespace, threads: Parallelism.defaultThreadCount)
            stored += unique.count
            batch.removeAll(keepingCapacity: true)
            progress?(TransferProgress(lines: reader.lineNumber, records: stored, phase: "import"))
        }
        var stopped = false
        while let line = try reader.nextLine() {
            if bad.contains(reader.lineNumber) { continue }
            guard let (record, namespace) = try parse(line, number: reader.lineNumber) else { continue }
            if namespace != batchNamespace || batch.count >= batchSize {
                if shouldStop?() == true {
                    batch.removeAll()
                    stopped = true
                    break
                }
                try flush()
                batchNamespace = namespace
            }
            batch.append(record)
        }
        if !stopped { try flush() }
        return ImportReport(records: stored, skippedLines: bad.count, skippedErrors: errors, createdIndex: created,
                            stopped: stopped)
    }
}
