extension Index {
    /// Adds records, or replaces those whose id is already in `namespace`.
    ///
    /// The batch is validated as a whole first: dimension, finite values
    /// (and not all zero under cosine), ids (1-512 bytes, none twice),
    /// metadata (values Pinecone accepts, at most 40 KB); on any error
    /// nothing is stored. Pass `embeddingModel` to have it checked against
    /// the index's.
    /// - Returns: the number of records upserted.
    @discardableResult
    public func upsert(_ records: [Record], namespace: String = "", embeddingModel: String? = nil,
                       threads: Int = 1) throws(LodestoneError) -> Int {
        try upsert(records, namespace: namespace, embeddingModel: embeddingModel, threads: threads, commit: .log)
    }

    /// ``upsert(_:namespace:embeddingModel:threads:)``, committed as `commit`
    /// says (a bulk load's batches may skip the log).
    func upsert(_ records: [Record], namespace: String, embeddingModel: String?, threads: Int,
                commit: LoadCommit) throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        try checkModel(embeddingModel)
        guard !records.isEmpty else { return 0 }
        try Self.validateNamespace(namespace)
        var seen = Set<String>()
        var flat: [Float] = []
        flat.reserveCapacity(records.count * rowDimension)
        // One sparse vector per record when any has one (else none: the log
        // record stays the one older readers replay).
        var sparse: [SparseVector?] = []
        let withSparse = kind == .sparse || textField != nil || records.contains { $0.sparseValues != nil }
        for record in records {
            try Self.validateID(record.id)
            guard seen.insert(record.id).inserted else {
                throw .invalidID(id: record.id, reason: "appears twice in one batch")
            }
            try validateText(record)
            if kind == .sparse {
                guard record.values.isEmpty else {
                    throw .invalidArgument(name: "values", reason: "record \"\(record.id)\": a sparse index stores "
                                           + "sparseValues only; give empty values")
                }
                guard textField != nil || record.sparseValues.map({ !$0.isEmpty }) ?? false else {
                    throw .invalidArgument(name: "sparseValues", reason: "record \"\(record.id)\": a sparse index's "
                                           + "records need sparse values (at least one component)")
                }
            } else {
                guard record.values.count == rowDimension else {
                    throw .dimensionMismatch(expected: rowDimension, actual: record.values.count)
                }
            }
            if let m = record.metadata {
                do throws(LodestoneError) {
                    try MetadataCodec.validate(m)
                } catch let .invalidMetadata(field, reason) {
                    throw .invalidMetadata(field: field, reason: "record \"\(record.id)\": \(reason)")
                }
            }
            if withSparse { sparse.append(try Self.validatedSparse(record.sparseValues, id: record.id)) }
            if kind == .sparse { flat.append(Self.placeholder) } else { flat += record.values }
        }
        _ = try VectorPreparation.prepareRows(flat, count: records.count, dimension: rowDimension, metric: metric,
                                      kernels: engine.kernels)
        let n = try logged(commit) { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            guard textField != nil else {
                return try upsertLocked(records, rows: flat, sparse: sparse, namespace: namespace, log: log,
                                        threads: threads)
            }
            var texts: [String?] = []
            for record in records { texts.append(try text(of: record.metadata, id: record.id)) }
            let replacing = lock.reading { records.map { table.slot(id: $0.id, namespace: namespace) } }
            let (vectors, stats) = textVectors(texts, replacing: replacing)
            return try withTextStatistics(stats) { () throws(LodestoneError) -> Int in
                try upsertLocked(records, rows: flat, sparse: vectors, namespace: namespace, log: log, threads: threads)
            }
        }
        try persistIfLogIsLarge()
        return n
    }

    /// The one-component vector a sparse index's records keep in its engine.
    static let placeholder: Float = 1

    /// A record's sparse vector checked and sorted, errors naming the record.
    static func validatedSparse(_ vector: SparseVector?, id: String) throws(LodestoneError) -> SparseVector? {
        guard let vector else { return nil }
        do throws(LodestoneError) {
            let v = try vector.validated()
            return v.isEmpty ? nil : v
        } catch let .invalidArgument(name, reason) {
            throw .invalidArgument(name: name, reason: "record \"\(id)\": \(reason)")
        }
    }

    /// Logs and applies validated records; the caller holds the writer lock
    /// (so the slots chosen here match the log order).
    private func upsertLocked(_ records: [Record], rows: [Float], sparse: [SparseVector?], namespace: String,
                              log: ([UInt8]) throws(LodestoneError) -> Void, threads: Int) throws(LodestoneError) -> Int {
        let slots: [UInt32] = lock.reading {
            var fresh = table.slotsForNewRecords(records.count).makeIterator()
            return records.map { table.slot(id: $0.id, namespace: namespace) ?? fresh.next()! }
        }
        let ids = records.map(\.id), metadata = records.map { $0.metadata ?? [:] }
        let record = LogRecord.upsert(namespace: namespace, slots: slots, ids: ids, rows: rows, metadata: metadata,
                                      sparse: sparse)
        try log(record.encoded(dimension: rowDimension))
        try Index.applyUpsert(namespace: namespace, ids: ids, slots: slots, rows: rows, metadata: metadata,
                              sparse: sparse, engine: engine,
                              table: table, fingerprint: &fingerprint, dimension: rowDimension, lock: lock, threads: threads)
        return records.count
    }

    /// Changes a record: replaces its vector when `values` is given, its
    /// sparse vector when `sparseValues` is, and sets the fields of
    /// `setMetadata` (others are kept), as Pinecone's update does.
    /// - Throws: ``LodestoneError/recordNotFound(id:namespace:)`` if absent.
    public func update(id: String, values: [Float]? = nil, sparseValues: SparseVector? = nil,
                       setMetadata: Metadata? = nil, namespace: String = "") throws(LodestoneError)
    {
        try checkOpen()
        try checkWritable()
        if kind == .sparse, values != nil {
            throw .invalidArgument(name: "values", reason: "a sparse index stores sparseValues only")
        }
        if kind == .sparse, let sparseValues, sparseValues.isEmpty {
            throw .invalidArgument(name: "sparseValues", reason: "a sparse index's records need sparse values")
        }
        if let textField, sparseValues != nil {
            throw .invalidArgument(name: "sparseValues", reason: "the index derives sparse values from its text field "
                                   + "\"\(textField)\"; set that field instead")
        }
        let newText = try text(of: setMetadata, id: id)
        if let values, values.count != rowDimension { throw .dimensionMismatch(expected: rowDimension, actual: values.count) }
        let newSparse = try Self.validatedSparse(sparseValues, id: id)
        if let values {
            _ = try VectorPreparation.prepareRows(values, count: 1, dimension: rowDimension, metric: metric, kernels: engine.kernels)
        }
        try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) in
            let current: (values: [Float], metadata: Metadata, sparse: SparseVector?)? = lock.reading {
                guard let slot = table.slot(id: id, namespace: namespace), let v = self.values(ofSlot: slot) else {
                    return nil
                }
                return (v, table.metadata.metadata(slot: Int(slot)) ?? [:], table.sparse.vector(slot: slot))
            }
            guard let current else { throw .recordNotFound(id: id, namespace: namespace) }
            var merged = current.metadata
            for (k, v) in setMetadata ?? [:] { merged[k] = v }
            try MetadataCodec.validate(merged)
            var sparse = sparseValues == nil ? current.sparse : newSparse
            var sparseChanged = sparseValues != nil
            let slot = lock.reading { table.slot(id: id, namespace: namespace)! }
            // New text: a new BM25 vector, and statistics that follow.
            var stats: TextStatistics? = nil
            if let newText {
                if kind == .sparse, BM25Encoder.tokenize(newText).isEmpty {
                    throw .invalidArgument(name: "setMetadata", reason: "record \"\(id)\": a sparse text index's "
                                           + "records need text (a word or number) in metadata field \"\(textField!)\"")
                }
                let (vectors, next) = textVectors([newText], replacing: [slot])
                (sparse, stats, sparseChanged) = (vectors[0], next, true)
            }
            try withTextStatistics(stats) { () throws(LodestoneError) in
                guard let values else {
                    // Metadata (and sparse vector) only: the vector and the graph stay as they are.
                    if sparseChanged {
                        try log(LogRecord.setMetadataAndSparse(slots: [slot], metadata: [merged], sparse: [sparse])
                            .encoded(dimension: rowDimension))
                        Index.applyMetadata([(slot, merged)], sparse: [sparse], table: table, lock: lock)
                    } else {
                        try setMetadataLocked([(slot, merged)], log: log)
                    }
                    return
                }
                _ = try upsertLocked([Record(id: id, values: values, metadata: merged)], rows: values,
                                     sparse: sparse == nil && textField == nil ? [] : [sparse], namespace: namespace,
                                     log: log, threads: 1)
            }
        }
    }

    /// Sets the fields of `setMetadata` (others are kept) on every record of
    /// `namespace` whose metadata passes `filter`, as one write: every
    /// merged record is validated first (nothing changes if one fails),
    /// then one log record holds them all. Vectors are untouched.
    /// - Returns: how many records matched.
    @discardableResult
    public func update(filter: Filter, setMetadata: Metadata, namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        if let textField { _ = try Self.text(of: setMetadata, field: textField) }
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            let changes: [(UInt32, Metadata)] = try lock.reading { () throws(LodestoneError) -> [(UInt32, Metadata)] in
                guard let (set, _) = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true) else {
                    return []
                }
                var out: [(UInt32, Metadata)] = []
                var failure: LodestoneError? = nil
                set!.forEach { slot in
                    guard failure == nil else { return }
                    var merged = table.metadata.metadata(slot: slot) ?? [:]
                    for (k, v) in setMetadata { merged[k] = v }
                    do throws(LodestoneError) {
                        try MetadataCodec.validate(merged)
                        out.append((UInt32(slot), merged))
                    } catch {
                        failure = error
                    }
                }
                if let failure { throw failure }
                return out
            }
            guard let textField, case let .string(text)? = setMetadata[textField] else {
                try setMetadataLocked(changes, log: log)
                return changes.count
            }
            // New text for every match: new BM25 vectors, statistics that follow.
            if kind == .sparse, BM25Encoder.tokenize(text).isEmpty {
                throw .invalidArgument(name: "setMetadata", reason: "a sparse text index's records need text "
                                       + "(a word or number) in metadata field \"\(textField)\"")
            }
            guard !changes.isEmpty else { return 0 }
            let (vectors, stats) = textVectors(changes.map { _ in text }, replacing: changes.map { $0.0 })
            try withTextStatistics(stats) { () throws(LodestoneError) in
                try log(LogRecord.setMetadataAndSparse(slots: changes.map(\.0), metadata: changes.map(\.1), sparse: vectors)
                    .encoded(dimension: rowDimension))
                Index.applyMetadata(changes, sparse: vectors, table: table, lock: lock)
            }
            return changes.count
        }
    }

    /// Logs and applies new metadata for slots in use; the caller holds the
    /// writer lock.
    private func setMetadataLocked(_ changes: [(UInt32, Metadata)], log: ([UInt8]) throws(LodestoneError) -> Void)
        throws(LodestoneError)
    {
        guard !changes.isEmpty else { return }
        try log(LogRecord.setMetadata(slots: changes.map(\.0), metadata: changes.map(\.1)).encoded(dimension: rowDimension))
        Index.applyMetadata(changes, table: table, lock: lock)
    }

    /// Deletes the records with these ids from `namespace`; ids not present
    /// are ignored. Returns how many were deleted.
    @discardableResult
    public func delete(ids: [String], namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            let slots: [UInt32] = lock.reading { Array(Set(ids.compactMap { table.slot(id: $0, namespace: namespace) })) }
            return try deleteSlots(slots, log: log)
        }
    }

    /// Deletes every record of `namespace`. Returns how many were deleted.
    @discardableResult
    public func deleteAll(namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            try deleteSlots(lock.reading { table.slots(namespace: namespace) }, log: log)
        }
    }

    /// Deletes the records of `namespace` whose metadata passes `filter`.
    /// Returns how many were deleted.
    @discardableResult
    public func delete(filter: Filter, namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            let slots: [UInt32] = lock.reading {
                guard let (set, _) = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true) else { return [] }
                var out: [UInt32] = []
                set!.forEach { out.append(UInt32($0)) }
                return out
            }
            return try deleteSlots(slots, log: log)
        }
    }

    private func deleteSlots(_ slots: [UInt32], log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int {
        guard !slots.isEmpty else { return 0 }
        try log(LogRecord.delete(slots: slots).encoded(dimension: rowDimension))
        forgetText(slots: slots)
        try withTextStatistics(nil) { () throws(LodestoneError) in
            try Index.applyDelete(slots, engine: engine, table: table, lock: lock)
        }
        return slots.count
    }

    /// Runs `body` under the store's writer lock with the log at hand. If a
    /// failed sync left the log unusable, it first recovers by persisting
    /// (a new segment from memory, a new log). With `commit` ``LoadCommit/persist``
    /// nothing is logged (the next persist commits the change); a logged
    /// write first persists such changes.
    private func logged<T>(_ commit: LoadCommit = .log,
                           _ body: (_ log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T)
        throws(LodestoneError) -> T
    {
        if store.needsRecovery { try persist() }
        return try withoutActuallyEscaping(body) { (body) throws(LodestoneError) -> T in
            let checked = { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T in
                // Checked again under the writer lock: a close or delete that
                // got there first wins, and nothing is logged after it.
                try self.checkOpen()
                return try body(log)
            }
            if commit == .persist { return try store.writeUnlogged(checked) }
            while true {
                // Unlogged changes wait for a persist: commit them first, so
                // the log only ever extends a state that was committed.
                if let result = try store.write(unlessUnlogged: true, checked) { return result }
                try persist()
            }
        }
    }
}
