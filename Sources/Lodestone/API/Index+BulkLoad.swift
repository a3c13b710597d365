/// How a bulk load (``Index/upsertVectors(fromFile:metadata:idField:namespace:batchSize:threads:commit:progress:shouldStop:)``)
/// commits its batches.
public enum LoadCommit: String, Sendable, CaseIterable {
    /// Each batch is logged before it is applied, as any upsert is: a crash
    /// keeps every batch stored before it.
    case log
    /// Batches skip the log. The index persists whenever they reach the
    /// auto-persist size (``Index/autoPersistLogBytes`` or the segment's
    /// size, whichever is larger) and when the load ends, however it ends,
    /// so a crash keeps the load's last persist. Each vector goes to disk
    /// once per persist instead of also to the log, and the log takes no
    /// disk; with a compact index, vectors a persist wrote are then read
    /// from its segment, and their room in the scratch file is given back.
    /// A logged write that comes while batches wait for their persist
    /// persists them first.
    case persist
}

/// Loading a vectors file (`.fvecs`, `.npy`) of any size in bounded memory.
extension Index {
    /// Upserts every row of a float32 vectors file (TEXMEX `.fvecs`, or a
    /// 2-d little-endian `.npy`), `batchSize` rows at a time, so memory
    /// stays the index's plus one batch whatever the file's size.
    ///
    /// Ids are the rows' numbers ("0", "1", ...) unless `metadata` names a
    /// JSON Lines file (gzip or plain) with one object per row, in row
    /// order (blank lines are skipped): its `idField` string becomes the
    /// record's id and the rest its metadata.
    ///
    /// What is checked before anything is stored: the vectors file's
    /// layout (a truncated file, a header of another kind, the index's
    /// dimension) and every metadata line (JSON, an object, as many as the
    /// rows). A damaged row found while loading (an `.fvecs` row declaring
    /// another dimension, a non-finite component, a repeated id within a
    /// batch) stops the load with the error: the batches before it stay
    /// stored, and the report of `progress` says how many. `shouldStop`,
    /// asked before each batch, ends the load early (the batches stored
    /// stay stored; ``ImportReport/stopped`` says so). `commit` says whether
    /// each batch is logged (``LoadCommit/log``) or the load commits by
    /// persisting (``LoadCommit/persist``, for large loads). A load that
    /// commits by persisting persists on its way out even when it throws; if
    /// that persist fails too, the batches stay in memory, uncommitted, and
    /// the next write, persist or close commits them.
    ///
    /// - Throws: ``LodestoneError/malformedFile(path:reason:)`` for the
    ///   vectors file, ``LodestoneError/malformedLine(path:line:reason:)``
    ///   for a metadata line, ``LodestoneError/dimensionMismatch(expected:actual:)``,
    ///   or what `upsert(_:namespace:embeddingModel:threads:)` throws for a batch.
    public func upsertVectors(fromFile path: String, metadata metadataPath: String? = nil, idField: String = "id",
                              namespace: String = "", batchSize: Int = 1_000, threads: Int = 1,
                              commit: LoadCommit = .log,
                              progress: ((TransferProgress) -> Void)? = nil,
                              shouldStop: (() -> Bool)? = nil) throws(LodestoneError) -> ImportReport {
        let load = { () throws(LodestoneError) -> ImportReport in
            try self.loadVectors(fromFile: path, metadata: metadataPath, idField: idField, namespace: namespace,
                                 batchSize: batchSize, threads: threads, commit: commit, progress: progress,
                                 shouldStop: shouldStop)
        }
        guard commit == .persist else { return try load() }
        // However the load ends, what it stored is committed.
        do throws(LodestoneError) {
            let report = try load()
            if store.hasUnlogged { try persist() }
            return report
        } catch {
            if store.hasUnlogged { try? persist() }  // the load's own error says more than a failed persist
            throw error
        }
    }

    private func loadVectors(fromFile path: String, metadata metadataPath: String?, idField: String,
                             namespace: String, batchSize: Int, threads: Int, commit: LoadCommit,
                             progress: ((TransferProgress) -> Void)?,
                             shouldStop: (() -> Bool)?) throws(LodestoneError) -> ImportReport {
        guard batchSize > 0 else { throw .invalidArgument(name: "batchSize", reason: "must be at least 1, got \(batchSize)") }
        let reader = try VectorFileReader(path: path)
        guard reader.dimension == dimension else {
            throw .dimensionMismatch(expected: dimension, actual: reader.dimension)
        }
        var lines: GzipLineReader?
        if let metadataPath {
            // Pass 1: every metadata line parses, and there is one per row.
            let check = try GzipLineReader(path: metadataPath)
            var rows = 0
            while let line = try check.nextLine() {
                guard !Self.isBlank(line) else { continue }
                _ = try Self.metadataLine(line, number: check.lineNumber, path: metadataPath, idField: idField)
                rows += 1
            }
            guard rows == reader.count else {
                throw .malformedFile(path: metadataPath, reason: "holds \(rows) metadata lines for the \(reader.count) "
                                     + "rows of \(path); give one JSON object per row, in row order")
            }
            lines = try GzipLineReader(path: metadataPath)
        }
        // Pass 2: a batch of rows (and their metadata lines) at a time.
        var stored = 0
        var start = 0
        while start < reader.count {
            if shouldStop?() == true {
                return ImportReport(records: stored, skippedLines: 0, skippedErrors: [], createdIndex: false,
                                    stopped: true)
            }
            let end = min(reader.count, start + batchSize)
            let rows = try reader.rows(start..<end)
            var records: [Record] = []
            records.reserveCapacity(end - start)
            for row in start..<end {
                var id = String(row)
                var metadata: Metadata?
                if let lines, let metadataPath {
                    var line = try lines.nextLine()
                    while let l = line, Self.isBlank(l) { line = try lines.nextLine() }
                    guard let line else {
                        throw .malformedFile(path: metadataPath, reason: "ended before row \(row) of \(path)")
                    }
                    let parsed = try Self.metadataLine(line, number: lines.lineNumber, path: metadataPath,
                                                       idField: idField)
                    if let given = parsed.id { id = given }
                    metadata = parsed.metadata
                }
                let offset = (row - start) * dimension
                records.append(Record(id: id, values: Array(rows[offset..<offset + dimension]), metadata: metadata))
            }
            _ = try upsert(records, namespace: namespace, embeddingModel: nil, threads: threads, commit: commit)
            stored += records.count
            start = end
            progress?(TransferProgress(lines: end, records: stored, phase: "import"))
        }
        return ImportReport(records: stored, skippedLines: 0, skippedErrors: [], createdIndex: false)
    }

    /// Whether a JSON Lines line holds only spaces, tabs or a CR (skipped).
    static func isBlank(_ line: [UInt8]) -> Bool {
        line.allSatisfy { $0 == 32 || $0 == 9 || $0 == 13 }
    }

    /// One metadata line: its id (the `idField` string, if any) and the rest.
    private static func metadataLine(_ line: [UInt8], number: Int, path: String, idField: String)
        throws(LodestoneError) -> (id: String?, metadata: Metadata)
    {
        do throws(LodestoneError) {
            let json: JSONValue
            do { json = try JSONValue.parse(bytes: line) } catch {
                throw LodestoneError.invalidArgument(name: "metadata", reason: "not valid JSON: \(error)")
            }
            var metadata = try Metadata.from(json: json)
            var id: String?
            switch metadata.removeValue(forKey: idField) {
            case .string(let s)?: id = s
            case .number(let n)? where n == n.rounded() && abs(n) < 1e15: id = String(Int64(n))
            case nil: break
            case let other?:
                throw LodestoneError.invalidArgument(name: idField, reason: "the id field holds \(other), not a string or an integer")
            }
            return (id, metadata)
        } catch {
            throw .malformedLine(path: path, line: number, reason: "\(error)")
        }
    }
}
