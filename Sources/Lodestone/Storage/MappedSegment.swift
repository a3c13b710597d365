import CLodestoneKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An opened segment: the file mapped copy-on-write (`MAP_PRIVATE`), its
/// header and directory validated, every section's checksum verified.
/// Raw sections are used in place; an index may write to its mapped records
/// (links, states) without touching the file.
final class MappedSegment: @unchecked Sendable {
    // @unchecked: the mapping is immutable except through the index that
    // owns this segment, which follows its own synchronisation.
    let path: String
    let base: UnsafeMutableRawPointer
    let size: Int
    let indexKind: UInt32
    let embeddingModel: String
    let createdNanoseconds: Int64
    let minorVersion: Int
    let entries: [SectionEntry]
    /// Per-chunk checksums of the chunked sections, by kind.
    let chunkChecksums: [UInt32: [UInt32]]

    /// Opens and validates a segment. With `lazy` (the default) the chunked
    /// sections' checksums are left to their readers, chunk by chunk (see
    /// ``NodeArena``); everything else is verified here.
    init(path: String, lazy: Bool = true) throws(LodestoneError) {
        self.path = path
        let (fd, size) = try POSIXFile.openForReading(path)
        defer { SystemCalls.close(fd) }
        self.size = size
        guard size >= SegmentFormat.page else {
            throw .corruptSegment(path: path, section: "header",
                                  reason: "the file is \(size) bytes, shorter than the \(SegmentFormat.page)-byte header page (truncated?)")
        }
        guard let mapped = SystemCalls.mapPrivate(fd, size: size) else {
            throw .io(path: path, operation: "mmap", errno: errno)
        }
        base = mapped
        var ok = false
        defer { if !ok { SystemCalls.unmap(mapped, size: size) } }

        let header = try Header(mapped, path: path)
        minorVersion = header.minorVersion
        indexKind = header.indexKind
        createdNanoseconds = header.createdNanoseconds
        embeddingModel = header.embeddingModel
        let entries = try Self.directory(mapped, size: size, header: header, path: path)
        let chunkChecksums = try Self.chunkChecksums(mapped, entries: entries, path: path)
        // Verify the sections that are not checked chunk by chunk.
        for e in entries where e.kind != SectionKind.chunkChecksums && (!lazy || chunkChecksums[e.kind] == nil) {
            guard lodestone_crc32c(0, mapped + e.offset, e.storedLength) == e.crc else {
                throw .corruptSegment(path: path, section: e.name, reason: "checksum mismatch")
            }
        }
        self.entries = entries
        self.chunkChecksums = chunkChecksums
        // Huge pages for the copies writes make; Linux also reads file
        // faults 2 MB at a time here (chunks are read whole on first use
        // anyway; sections read record by record turn it off).
        SystemCalls.adviseHugePages(mapped, size: size)
        ok = true
    }

    /// The section directory of the segment at `path`, checked (header and
    /// directory), without reading or verifying any section.
    static func sectionEntries(path: String) throws(LodestoneError) -> [SectionEntry] {
        let (fd, size) = try POSIXFile.openForReading(path)
        defer { SystemCalls.close(fd) }
        guard size >= SegmentFormat.page else {
            throw .corruptSegment(path: path, section: "header", reason: "the file is \(size) bytes, shorter than the header page")
        }
        guard let mapped = SystemCalls.mapPrivate(fd, size: size) else {
            throw .io(path: path, operation: "mmap", errno: errno)
        }
        defer { SystemCalls.unmap(mapped, size: size) }
        return try directory(mapped, size: size, header: try Header(mapped, path: path), path: path)
    }

    /// The header page's fields (FORMAT.md), checked: magic, version,
    /// byte order, checksum, lengths.
    struct Header {
        var minorVersion: Int
        var indexKind: UInt32
        var createdNanoseconds: Int64
        var directoryOffset: UInt64
        var directoryCount: Int
        var directoryCRC: UInt32
        var embeddingModel: String

        init(_ mapped: UnsafeRawPointer, path: String) throws(LodestoneError) {
            func corrupt(_ reason: String) -> LodestoneError { .corruptSegment(path: path, section: "header", reason: reason) }
            let headerBytes = Array(UnsafeRawBufferPointer(start: mapped, count: SegmentFormat.headerLength))
            var h = ByteReader(headerBytes) { corrupt("shorter than its fields") }
            guard try h.raw(8) == SegmentFormat.magic else { throw corrupt("no LODESTON magic: not a Lodestone segment") }
            let major = try h.u16()
            minorVersion = Int(try h.u16())
            guard Int(major) <= Int(SegmentFormat.major) else {
                throw .unsupportedFormatVersion(path: path, found: Int(major), supported: Int(SegmentFormat.major))
            }
            guard major == SegmentFormat.major else { throw corrupt("format major version \(major) is not 1") }
            guard try h.u32() == SegmentFormat.byteOrderMark else {
                throw corrupt("byte-order mark mismatch (written on a host of the other byte order, or damaged)")
            }
            let storedCRC = headerBytes.withUnsafeBytes { p in p.load(fromByteOffset: 252, as: UInt32.self).littleEndian }
            let actualCRC = headerBytes.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, 252) }
            guard storedCRC == actualCRC else { throw corrupt("checksum mismatch") }
            guard try h.u32() == UInt32(SegmentFormat.headerLength) else { throw corrupt("unexpected header length") }
            indexKind = try h.u32()
            createdNanoseconds = Int64(bitPattern: try h.u64())
            directoryOffset = try h.u64()
            directoryCount = Int(try h.u32())
            directoryCRC = try h.u32()
            let modelLength = Int(try h.u16())
            guard modelLength <= SegmentFormat.maxModelName else { throw corrupt("model name length \(modelLength)") }
            embeddingModel = String(decoding: try h.raw(modelLength), as: UTF8.self)
        }
    }

    /// The section directory, checked: its checksum, every entry inside the
    /// file and self-consistent, and no two sections (or the directory)
    /// overlapping.
    private static func directory(_ mapped: UnsafeRawPointer, size: Int, header: Header, path: String)
        throws(LodestoneError) -> [SectionEntry]
    {
        func corrupt(_ section: String, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: section, reason: reason)
        }
        let count = header.directoryCount, directoryOffset = header.directoryOffset
        let dirLength = count * SegmentFormat.directoryEntryLength
        guard count <= 4096, directoryOffset >= UInt64(SegmentFormat.page),
              directoryOffset <= UInt64(size), UInt64(size) - directoryOffset >= UInt64(dirLength) else {
            throw corrupt("directory", "\(count) entries at offset \(directoryOffset) do not fit in the \(size)-byte file (truncated?)")
        }
        let dirPointer = mapped + Int(directoryOffset)
        guard lodestone_crc32c(0, dirPointer, dirLength) == header.directoryCRC else {
            throw corrupt("directory", "checksum mismatch")
        }
        let dirBytes = Array(UnsafeRawBufferPointer(start: dirPointer, count: dirLength))
        var d = ByteReader(dirBytes) { corrupt("directory", "shorter than its entries") }
        var entries: [SectionEntry] = []
        for _ in 0..<count {
            let kind = try d.u32()
            let codecRaw = try d.u32()
            let offset = try d.u64(), stored = try d.u64(), raw = try d.u64()
            let crc = try d.u32()
            let stride = Int(try d.u32())
            let records = try d.u64()
            try d.skip(16)
            let name = SectionKind.name(kind)
            guard let codec = SectionCodec(rawValue: codecRaw) else { throw corrupt(name, "unknown codec \(codecRaw)") }
            guard offset % UInt64(SegmentFormat.page) == 0, offset >= UInt64(SegmentFormat.page),
                  offset <= UInt64(size), stored <= UInt64(size) - offset else {
                throw corrupt(name, "\(stored) bytes at offset \(offset) do not fit in the \(size)-byte file (truncated?)")
            }
            guard raw < 1 << 40, records < 1 << 40 else { throw corrupt(name, "absurd lengths") }
            if codec == .raw {
                guard raw == stored else { throw corrupt(name, "raw section with stored \(stored) != raw \(raw) bytes") }
            }
            if stride > 0 {
                let (bytes, overflow) = UInt64(stride).multipliedReportingOverflow(by: records)
                guard !overflow, bytes == raw else {
                    throw corrupt(name, "\(records) records of \(stride) bytes do not make \(raw) bytes")
                }
            }
            entries.append(SectionEntry(kind: kind, codec: codec, offset: Int(offset), storedLength: Int(stored),
                                        rawLength: Int(raw), crc: crc, stride: stride, count: Int(records)))
        }
        // Sections must not overlap each other or the directory.
        let spans = (entries.map { ($0.offset, $0.offset + $0.storedLength, $0.name) }
            + [(Int(directoryOffset), Int(directoryOffset) + dirLength, "directory")])
            .filter { $0.1 > $0.0 }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(spans, spans.dropFirst()) where b.0 < a.1 {
            throw corrupt(b.2, "overlaps \(a.2)")
        }
        return entries
    }

    /// The `chunk-checksums` section (verified whole): per chunked section,
    /// the checksum of each 4,096-record chunk, by kind.
    private static func chunkChecksums(_ mapped: UnsafeRawPointer, entries: [SectionEntry], path: String)
        throws(LodestoneError) -> [UInt32: [UInt32]]
    {
        func corrupt(_ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: "chunk-checksums", reason: reason)
        }
        guard let listEntry = entries.first(where: { $0.kind == SectionKind.chunkChecksums }) else {
            throw corrupt("section missing")
        }
        let listBytes = Array(UnsafeRawBufferPointer(start: mapped + listEntry.offset, count: listEntry.storedLength))
        guard lodestone_crc32c(0, mapped + listEntry.offset, listEntry.storedLength) == listEntry.crc else {
            throw corrupt("checksum mismatch")
        }
        var list = ByteReader(listBytes) { corrupt("shorter than its lists") }
        var chunkChecksums: [UInt32: [UInt32]] = [:]
        while list.position < listBytes.count {
            let kind = try list.u32()
            let count = Int(try list.u32())
            guard let e = entries.first(where: { $0.kind == kind }), e.stride > 0, e.codec == .raw,
                  count == (e.count + 4095) / 4096 else {
                throw corrupt("list for \(SectionKind.name(kind)) does not match its section")
            }
            var crcs: [UInt32] = []
            for _ in 0..<count { crcs.append(try list.u32()) }
            chunkChecksums[kind] = crcs
        }
        return chunkChecksums
    }

    deinit { SystemCalls.unmap(base, size: size) }

    /// Whether the file has a section of `kind`.
    func has(_ kind: UInt32) -> Bool { entries.contains { $0.kind == kind } }

    /// The directory entry of `kind`, or a `corruptSegment` error if missing.
    func entry(_ kind: UInt32) throws(LodestoneError) -> SectionEntry {
        guard let e = entries.first(where: { $0.kind == kind }) else {
            throw .corruptSegment(path: path, section: SectionKind.name(kind), reason: "section missing")
        }
        return e
    }

    /// A raw section's bytes in the mapping, checked to hold `count` records
    /// of `stride` bytes.
    func records(_ kind: UInt32, stride: Int, count: Int) throws(LodestoneError) -> UnsafeMutableRawPointer {
        let e = try entry(kind)
        guard e.codec == .raw, e.stride == stride, e.count == count else {
            throw .corruptSegment(path: path, section: e.name,
                                  reason: "expected \(count) raw records of \(stride) bytes, found \(e.count) of \(e.stride)")
        }
        return base + e.offset
    }

    /// The per-chunk checksums of a chunked section.
    func checksums(_ kind: UInt32) throws(LodestoneError) -> [UInt32] {
        guard let crcs = chunkChecksums[kind] else {
            throw .corruptSegment(path: path, section: SectionKind.name(kind), reason: "no chunk checksums listed")
        }
        return crcs
    }

    /// Verifies the whole checksum of every section not verified chunk by
    /// chunk (those are never written through the mapping).
    func verifyUnchunkedSections() throws(LodestoneError) {
        for e in entries where chunkChecksums[e.kind] == nil && lodestone_crc32c(0, base + e.offset, e.storedLength) != e.crc {
            throw .corruptSegment(path: path, section: e.name, reason: "checksum mismatch")
        }
    }

    /// A section's decoded bytes (decompressed when LZ4).
    func bytes(_ kind: UInt32) throws(LodestoneError) -> [UInt8] {
        let e = try entry(kind)
        let stored = UnsafeRawBufferPointer(start: base + e.offset, count: e.storedLength)
        if e.codec == .raw { return Array(stored) }
        guard let out = LZ4Codec.decompress(stored, rawLength: e.rawLength) else {
            throw .corruptSegment(path: path, section: e.name, reason: "LZ4 data does not decode to \(e.rawLength) bytes")
        }
        return out
    }
}
