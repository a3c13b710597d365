import CLodestoneKernels

/// How a section's bytes are stored.
enum SectionCodec: UInt32 {
    case raw = 0
    case lz4 = 1
}

/// The section kinds of the segment format (see FORMAT.md).
enum SectionKind {
    static let parameters: UInt32 = 1
    static let vectors: UInt32 = 2
    static let keys: UInt32 = 3
    static let states: UInt32 = 4
    static let free: UInt32 = 5
    static let chunkChecksums: UInt32 = 6
    static let norms: UInt32 = 7
    static let hnswLinks0: UInt32 = 16
    static let hnswLevels: UInt32 = 17
    static let hnswUpperStart: UInt32 = 18
    static let hnswUpperLinks: UInt32 = 19
    static let hnswTombstones: UInt32 = 20
    static let hnswFreeUpperRuns: UInt32 = 21
    /// Format 1.1's blocks of the quantized traversal (without the node's
    /// own code): ignored on open, so such an index encodes its blocks again.
    static let hnswNeighbourCodes11: UInt32 = 22
    /// Per node, its neighbours' codes and its own (the quantized traversal's blocks).
    static let hnswNeighbourCodes: UInt32 = 23
    /// The compact traversal's center (Float32 components).
    static let hnswCompactCenter: UInt32 = 24
    /// Per node, its 4-bit code (the compact traversal's).
    static let hnswCompactCodes: UInt32 = 25
    /// Per node, the CRC-32C of its vector record (a compact index's
    /// vectors are read one record at a time).
    static let hnswVectorChecksums: UInt32 = 26
    static let recordsHeader: UInt32 = 32
    static let recordsSlots: UInt32 = 33
    static let recordsHash: UInt32 = 34
    static let recordsBlob: UInt32 = 35
    /// An `Index`'s record changes since the base segment (delta files).
    static let recordsChanges: UInt32 = 36
    /// An `Index`'s sparse vectors: per slot, where its components start.
    static let sparseOffsets: UInt32 = 37
    /// Every slot's sparse components (term, value), slot after slot.
    static let sparseVectors: UInt32 = 38
    /// Per term, its value bounds and where its postings start.
    static let sparseTerms: UInt32 = 39
    /// Per term, the slots holding it with their values.
    static let sparsePostings: UInt32 = 40
    /// A delta's patch of per-node section `k` has kind `patchBase + k`.
    static let patchBase: UInt32 = 64

    static func name(_ kind: UInt32) -> String {
        switch kind {
        case parameters: return "parameters"
        case vectors: return "vectors"
        case keys: return "keys"
        case states: return "states"
        case free: return "free"
        case chunkChecksums: return "chunk-checksums"
        case norms: return "norms"
        case hnswLinks0: return "hnsw.links0"
        case hnswLevels: return "hnsw.levels"
        case hnswUpperStart: return "hnsw.upper-start"
        case hnswUpperLinks: return "hnsw.upper-links"
        case hnswTombstones: return "hnsw.tombstones"
        case hnswFreeUpperRuns: return "hnsw.free-upper-runs"
        case hnswNeighbourCodes11: return "hnsw.neighbour-codes-1.1"
        case hnswNeighbourCodes: return "hnsw.neighbour-codes"
        case hnswCompactCenter: return "hnsw.compact-center"
        case hnswCompactCodes: return "hnsw.compact-codes"
        case hnswVectorChecksums: return "hnsw.vector-checksums"
        case recordsHeader: return "records.header"
        case recordsSlots: return "records.slots"
        case recordsHash: return "records.hash"
        case recordsBlob: return "records.blob"
        case recordsChanges: return "records.changes"
        case sparseOffsets: return "sparse.offsets"
        case sparseVectors: return "sparse.vectors"
        case sparseTerms: return "sparse.terms"
        case sparsePostings: return "sparse.postings"
        case (patchBase + 1)..<(patchBase + 32): return "patch." + name(kind - patchBase)
        default: return "section kind \(kind)"
        }
    }
}

/// The format constants.
enum SegmentFormat {
    static let magic: [UInt8] = Array("LODESTON".utf8)
    static let major: UInt16 = 1
    static let minor: UInt16 = 4
    static let byteOrderMark: UInt32 = 0x0A0B_0C0D
    static let headerLength = 256
    static let page = 4096
    static let directoryEntryLength = 64
    static let maxModelName = 128
    /// Records per chunk of a chunked section.
    static let chunkRecords = 4096

    static func align(_ n: Int) -> Int { (n + page - 1) / page * page }
}

/// Bytes a section may own (an array of plain values).
protocol SectionBytes {
    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws(LodestoneError) -> R) throws(LodestoneError) -> R
}

/// Plain values a section's owned array may hold.
protocol SectionElement {}
extension UInt8: SectionElement {}
extension UInt32: SectionElement {}
extension UInt64: SectionElement {}
extension Float: SectionElement {}

extension Array: SectionBytes where Element: SectionElement {
    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws(LodestoneError) -> R) throws(LodestoneError) -> R {
        try withBytes(self, body)
    }
}

/// A section to write: its kind, codec, record layout and content: byte
/// ranges written one after another (valid for the duration of the write),
/// or an array the section owns.
struct PendingSection {
    var kind: UInt32
    var codec: SectionCodec = .raw
    var stride = 0
    var count = 0
    var pieces: [UnsafeRawBufferPointer] = []
    /// Content owned by the section, written instead of `pieces`.
    var owned: (any SectionBytes)? = nil
    /// Whether the section's records get a checksum per chunk of 4,096
    /// (listed in the `chunk-checksums` section), so that a reader can verify
    /// it lazily, chunk by chunk. Pieces may be any runs of whole records.
    var chunked = false
    /// When set, a section of this kind follows this one, holding the
    /// CRC-32C of each of its records (4 bytes a record, chunked), computed
    /// as the records are written.
    var recordChecksumKind: UInt32? = nil
    /// Content made piece by piece as it is written, for content too large
    /// to build whole: called once, with a function taking consecutive byte
    /// ranges (each valid during that call). Raw sections only.
    var producer: ((_ emit: (UnsafeRawBufferPointer) throws(LodestoneError) -> Void) throws(LodestoneError) -> Void)? = nil
}

/// One directory entry of an opened segment.
struct SectionEntry {
    let kind: UInt32
    let codec: SectionCodec
    let offset: Int
    let storedLength: Int
    let rawLength: Int
    let crc: UInt32
    let stride: Int
    let count: Int
    var name: String { SectionKind.name(kind) }
}
