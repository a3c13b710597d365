/// What a segment file holds, for inspection tools (`lodestone inspect`).
public struct SegmentInfo: Sendable {
    /// One section of the file.
    public struct Section: Sendable {
        /// The section's name (FORMAT.md).
        public let name: String
        /// `raw` or `lz4`.
        public let codec: String
        /// Where it starts in the file.
        public let offset: Int
        /// Bytes stored in the file.
        public let storedBytes: Int
        /// Bytes once decoded.
        public let rawBytes: Int
        /// Records it holds (0 when it is not an array of records).
        public let records: Int
        /// Bytes per record.
        public let stride: Int
        /// Its CRC-32C.
        public let checksum: UInt32
        /// Decoded / stored bytes (1 for raw sections).
        public var compressionRatio: Double { storedBytes > 0 ? Double(rawBytes) / Double(storedBytes) : 1 }
    }

    /// The file's path.
    public let path: String
    /// The file's size in bytes.
    public let fileBytes: Int
    /// Format version, as "major.minor".
    public let formatVersion: String
    /// The index kind stored (`flat`, `hnsw`, or a number).
    public let indexKind: String
    /// The embedding model recorded ("" if none).
    public let embeddingModel: String
    /// When the file was written, in nanoseconds since 1970 (UTC).
    public let createdNanoseconds: Int64
    /// The sections, in file order.
    public let sections: [Section]

    /// Reads a segment's header and directory (validating them, not the
    /// sections' contents).
    public init(path: String) throws(LodestoneError) {
        let segment = try MappedSegment(path: path)
        self.path = path
        fileBytes = segment.size
        formatVersion = "\(SegmentFormat.major).\(segment.minorVersion)"
        indexKind = segment.indexKind == 1 ? "flat" : segment.indexKind == 2 ? "hnsw" : String(segment.indexKind)
        embeddingModel = segment.embeddingModel
        createdNanoseconds = segment.createdNanoseconds
        sections = segment.entries.map {
            Section(name: $0.name, codec: $0.codec == .raw ? "raw" : "lz4", offset: $0.offset, storedBytes: $0.storedLength,
                    rawBytes: $0.rawLength, records: $0.count, stride: $0.stride, checksum: $0.crc)
        }
    }
}
