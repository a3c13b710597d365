/// A record: a string id, its vector, and optional metadata (Pinecone's
/// shape).
public struct Record: Sendable, Hashable {
    /// The id, unique within a namespace: 1 to 512 bytes of UTF-8.
    public var id: String
    /// The vector (the index's dimension; finite; not all zero under cosine).
    public var values: [Float]
    /// Metadata fields, at most 40 KB of JSON.
    public var metadata: Metadata?
    /// Its sparse vector (term weights, as Pinecone's `sparse_values`), if
    /// any: searched by ``Index/query(vector:sparseVector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)``.
    public var sparseValues: SparseVector?

    /// A record.
    public init(id: String, values: [Float], metadata: Metadata? = nil, sparseValues: SparseVector? = nil) {
        self.id = id
        self.values = values
        self.metadata = metadata
        self.sparseValues = sparseValues
    }
}

/// One result of a query.
public struct Match: Sendable, Hashable {
    /// The record's id.
    public var id: String
    /// The score on Pinecone's scale for the metric: cosine similarity, the
    /// inner product, or the squared Euclidean distance (lower is closer).
    public var score: Float
    /// The stored vector, when asked for (unit length under cosine, as
    /// stored).
    public var values: [Float]?
    /// The record's metadata, when asked for and present.
    public var metadata: Metadata?
    /// The stored sparse vector, when values are asked for and it has one.
    public var sparseValues: SparseVector?

    /// Creates a match.
    public init(id: String, score: Float, values: [Float]? = nil, metadata: Metadata? = nil,
                sparseValues: SparseVector? = nil) {
        self.id = id
        self.score = score
        self.values = values
        self.metadata = metadata
        self.sparseValues = sparseValues
    }
}

/// The answer to a query.
public struct QueryResponse: Sendable {
    /// The matches, best first: min(topK, records passing the filter).
    public var matches: [Match]
    /// The namespace searched.
    public var namespace: String
    /// What the search did, when `explain` was asked for.
    public var explanation: SearchStatistics?

    /// A response of these matches (batch paths assemble one per query).
    public init(matches: [Match], namespace: String, explanation: SearchStatistics? = nil) {
        self.matches = matches
        self.namespace = namespace
        self.explanation = explanation
    }
}

/// How a new index is built and written.
public struct IndexOptions: Sendable, Hashable {
    /// HNSW (approximate) or flat (exact).
    public var kind: IndexKind
    /// The HNSW graph's parameters (ignored by a flat index).
    public var hnsw: HNSWParameters
    /// When a write counts as durable.
    public var durability: Durability
    /// A metadata field of text to search with BM25, or nil: the index
    /// keeps a BM25 vector of each record's text as its sparse values and
    /// answers ``Index/query(text:vector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)``
    /// (records then give no sparse values of their own).
    public var textField: String?

    /// Options (defaults: HNSW with `m` 16, `efConstruction` 200, `efSearch`
    /// 64; synchronous durability; no text field).
    public init(kind: IndexKind = .hnsw, hnsw: HNSWParameters = HNSWParameters(),
                durability: Durability = .synchronous, textField: String? = nil) {
        self.kind = kind
        self.hnsw = hnsw
        self.durability = durability
        self.textField = textField
    }
}

/// What ``Database/describeIndex(_:)`` reports.
public struct IndexDescription: Sendable, Hashable {
    public var name: String
    public var dimension: Int
    public var metric: Metric
    public var embeddingModel: String
    public var kind: IndexKind
    /// Records over all namespaces.
    public var recordCount: Int
    /// Bytes of the index's files on disk.
    public var diskBytes: Int
    /// Bytes per vector that searches read, records aside: what should
    /// stay in memory to serve at full speed (``HNSWIndex/residentBytesPerVector``;
    /// a flat index's vectors, norms and keys). Nil for a sparse index.
    public var residentBytesPerVector: Int? = nil
    /// Whether it can serve queries (always true once opened: Lodestone
    /// indexes are ready as soon as they exist).
    public var ready: Bool
    /// The distribution of its vectors (for checking incoming vectors).
    public var fingerprint: VectorFingerprint
    /// The metadata field searched by text (``IndexOptions/textField``), or nil.
    public var textField: String? = nil
}

/// What ``Index/describeStats()`` reports.
public struct IndexStats: Sendable, Hashable {
    /// Records per namespace (namespaces holding none are left out).
    public var namespaces: [String: Int]
    public var dimension: Int
    public var totalRecordCount: Int
    public var metric: Metric
}

/// One page of ``Index/listIDs(namespace:prefix:filter:limit:paginationToken:)``.
public struct IDPage: Sendable, Hashable {
    /// Ids in ascending (byte) order.
    public var ids: [String]
    /// Pass to the next call for the next page; nil on the last page.
    public var nextToken: String?
}
