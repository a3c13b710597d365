/// BM25 over a metadata text field (``IndexOptions/textField``): the index
/// keeps each record's text as a BM25 document vector in its sparse values,
/// and ``Index/query(text:vector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)``
/// weighs a query's terms by their idf over the records stored now.
extension Index {
    /// The documents holding text and their tokens, over every namespace
    /// (the average document length of BM25's length normalisation).
    struct TextStatistics: Equatable {
        var documents = 0
        var tokens = 0

        var averageLength: Double { documents > 0 && tokens > 0 ? Double(tokens) / Double(documents) : 1 }

        /// Counts a text of `length` tokens in (out when negative); a text
        /// without a token counts for nothing.
        mutating func add(length: Int) {
            guard length != 0 else { return }
            documents += length > 0 ? 1 : -1
            tokens += length
        }
    }

    /// BM25's term-frequency saturation and length normalisation
    /// (pinecone-text's and Lucene's defaults).
    static let textK1 = 1.2, textB = 0.75

    /// The text of `metadata`'s text field: nil when absent; a value of
    /// another type is refused, naming the record.
    func text(of metadata: Metadata?, id: String) throws(LodestoneError) -> String? {
        guard let textField else { return nil }
        return try Self.text(of: metadata, field: textField, record: "record \"\(id)\": ")
    }

    /// The text `metadata` holds in `field` (nil when absent); a value of
    /// another type is refused, the message starting with `record`.
    static func text(of metadata: Metadata?, field: String, record: String = "") throws(LodestoneError) -> String? {
        guard let value = metadata?[field] else { return nil }
        guard case let .string(s) = value else {
            throw .invalidMetadata(field: field, reason: "\(record)the index's text field must hold a string")
        }
        return s
    }

    /// Checks what a write gives a text index: no sparse values of its own
    /// (they come from the text), and text where a sparse index needs it.
    func validateText(_ record: Record) throws(LodestoneError) {
        guard let textField else { return }
        if record.sparseValues != nil {
            throw .invalidArgument(name: "sparseValues", reason: "record \"\(record.id)\": the index derives sparse "
                                   + "values from its text field \"\(textField)\"; leave them out")
        }
        let text = try text(of: record.metadata, id: record.id)
        if kind == .sparse, text.map({ BM25Encoder.tokenize($0).isEmpty }) ?? true {
            throw .invalidArgument(name: "metadata", reason: "record \"\(record.id)\": a sparse text index's records "
                                   + "need text (a word or number) in metadata field \"\(textField)\"")
        }
    }

    /// The statistics over the records stored now (the writer lock held):
    /// kept from the last text write, or counted once after an open.
    private func currentTextStatistics() -> TextStatistics {
        if let known = textStatistics.withLock({ $0 }) { return known }
        var stats = TextStatistics()
        lock.reading {
            for s in 0..<UInt32(table.capacity) where table.isInUse(s) { stats.add(length: storedTextLength(slot: s)) }
        }
        return stats
    }

    /// The length in tokens of the text a slot holds now (0 without); the
    /// caller holds the read lock.
    private func storedTextLength(slot: UInt32) -> Int {
        guard let textField, case let .string(t)? = table.metadata.metadata(slot: Int(slot))?[textField] else { return 0 }
        return BM25Encoder.tokenize(t).count
    }

    /// `stats` without the text `slots` hold now (the writer lock held).
    private func removingText(of slots: some Sequence<UInt32>, from stats: TextStatistics) -> TextStatistics {
        var stats = stats
        lock.reading { for s in slots { stats.add(length: -storedTextLength(slot: s)) } }
        return stats
    }

    /// BM25 document vectors for records about to replace what `slots`
    /// hold (nil: a new record), with the statistics that follow; the
    /// writer lock held. Commit them with ``commitTextStatistics(_:)``
    /// once the write is applied (``withTextStatistics(_:_:)``).
    func textVectors(_ texts: [String?], replacing slots: [UInt32?]) -> ([SparseVector?], TextStatistics) {
        var stats = removingText(of: slots.compactMap { $0 }, from: currentTextStatistics())
        let documents = texts.map { $0.map(BM25Encoder.termCounts) }
        for case let d? in documents { stats.add(length: d.length) }
        let average = stats.averageLength
        return (documents.map { d in
            guard let d, d.length > 0 else { return nil }
            return BM25Encoder.documentVector(d.counts, length: d.length, averageLength: average, k1: Self.textK1,
                                              b: Self.textB)
        }, stats)
    }

    /// Keeps the statistics of a text write that was applied.
    func commitTextStatistics(_ stats: TextStatistics) { textStatistics.withLock { $0 = stats } }

    /// Runs a write, then keeps `stats` (when given); a write that fails
    /// leaves the statistics unknown, to be counted again.
    func withTextStatistics<T>(_ stats: TextStatistics?, _ body: () throws(LodestoneError) -> T)
        throws(LodestoneError) -> T
    {
        do {
            let result = try body()
            if let stats { commitTextStatistics(stats) }
            return result
        } catch {
            textStatistics.withLock { $0 = nil }
            throw error
        }
    }

    /// Takes deleted records' text out of the statistics (the writer lock
    /// held, before the slots are freed).
    func forgetText(slots: [UInt32]) {
        guard textField != nil, let stats = textStatistics.withLock({ $0 }) else { return }
        commitTextStatistics(removingText(of: slots, from: stats))
    }

    /// A text query's BM25 vector: each distinct term's idf over the records
    /// holding text now, `ln((N + 1) / (df + 0.5))`, normalised to sum 1
    /// (as ``BM25Encoder/encodeQuery(_:)`` weighs it); the read lock held.
    func textQueryVector(_ text: String) -> SparseVector {
        BM25Encoder.queryVector(text, documents: table.sparse.count) { table.sparse.postings(term: $0)?.entries.count ?? 0 }
    }

    /// The `topK` records of `namespace` best matching `text` by BM25 over
    /// the index's text field (``IndexOptions/textField``), or `text` and a
    /// dense vector together (hybrid), among those whose metadata passes
    /// `filter`, best first.
    ///
    /// The text is tokenized as ``BM25Encoder/tokenize(_:)`` does; each
    /// term weighs its idf over the records holding text now (so the
    /// weights follow every write), normalised to sum 1, and a record's
    /// text score is the dot product with its BM25 document vector. Records
    /// sharing no term with the text score 0 and, text alone, are not
    /// results. With `vector`, the two scores combine as
    /// ``query(vector:sparseVector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)``
    /// combines them; text without a word or number leaves the dense query.
    ///
    /// - Throws: ``LodestoneError/invalidArgument(name:reason:)`` when the
    ///   index has no text field, and what the vector query throws.
    public func query(text: String, vector: [Float]? = nil, topK: Int, namespace: String = "",
                      filter: Filter? = nil, fusion: HybridFusion = .sum, includeValues: Bool = false,
                      includeMetadata: Bool = false, ef: Int? = nil, explain: Bool = false,
                      embeddingModel: String? = nil) throws(LodestoneError) -> QueryResponse {
        try checkOpen()
        guard textField != nil else {
            throw .invalidArgument(name: "text", reason: "index \"\(name)\" has no text field; create it with "
                                   + "IndexOptions(textField:) to search text")
        }
        guard text.utf8.count <= Index.maximumQueryTextBytes else {
            throw .invalidArgument(name: "text", reason: "at most \(Index.maximumQueryTextBytes) bytes, got \(text.utf8.count)")
        }
        let sparse = lock.reading { textQueryVector(text) }
        if sparse.isEmpty {
            if let vector {
                return try query(vector: vector, topK: topK, namespace: namespace, filter: filter,
                                 includeValues: includeValues, includeMetadata: includeMetadata, ef: ef,
                                 explain: explain, embeddingModel: embeddingModel)
            }
            try checkModel(embeddingModel)
            guard topK >= 1 else { throw .invalidArgument(name: "topK", reason: "must be at least 1, got \(topK)") }
            return QueryResponse(matches: [], namespace: namespace, explanation: nil)
        }
        return try query(vector: vector, sparseVector: sparse, topK: topK, namespace: namespace, filter: filter,
                         fusion: fusion, includeValues: includeValues, includeMetadata: includeMetadata, ef: ef,
                         explain: explain, embeddingModel: embeddingModel)
    }

    /// The longest query text, in UTF-8 bytes.
    public static let maximumQueryTextBytes = 64 * 1024
}
