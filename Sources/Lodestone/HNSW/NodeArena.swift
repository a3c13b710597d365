import CLodestoneKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Fixed-size records addressed by a node id, stored in chunks that never
/// move once allocated.
///
/// Readers may address records while a writer appends: growing allocates a
/// new chunk and publishes its pointer (release), readers load chunk pointers
/// with acquire, and no record is ever relocated. Chunk pointers live in a
/// table sized for `maxChunks`; the table is `calloc`ed, so its untouched
/// pages cost no resident memory.
final class NodeArena: @unchecked Sendable {
    // @unchecked: chunk pointers are published and read with atomics; the
    // records themselves are synchronised by the graph's own protocol.

    static let chunkShift = 12
    static let chunkSize = 1 << chunkShift
    static let chunkMask = UInt32(chunkSize - 1)
    static let maxChunks = 1 << 16
    static let hugePage = 2 << 20

    /// Bytes per record.
    let stride: Int
    /// The byte every new record starts filled with.
    let fill: UInt8
    private let table: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Chunks allocated so far (changed only by the writer).
    private(set) var chunkCount = 0
    /// Whether each chunk was allocated here (else it lives in a mapping
    /// owned by someone else, who outlives this arena).
    private var owned: [Bool] = []

    init(stride: Int, fill: UInt8 = 0) {
        precondition(stride > 0)
        self.stride = stride
        self.fill = fill
        let raw = calloc(NodeArena.maxChunks, MemoryLayout<UnsafeMutableRawPointer?>.stride)!
        table = raw.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: NodeArena.maxChunks)
    }

    deinit {
        for c in 0..<chunkCount where owned[c] { free(table[c]) }
        free(table)
    }

    /// Records that fit without allocating.
    var capacity: Int { chunkCount << NodeArena.chunkShift }

    /// Bytes allocated here for records (mapped chunks not included).
    var allocatedBytes: Int { owned.filter { $0 }.count * NodeArena.chunkSize * stride }

    private static func allocateChunk(stride: Int, fill: UInt8) -> UnsafeMutableRawPointer {
        let bytes = NodeArena.chunkSize * stride
        let huge = bytes >= 2 * NodeArena.hugePage
        var p: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&p, huge ? NodeArena.hugePage : 64, bytes) == 0, let p else {
            fatalError("Lodestone: out of memory allocating \(bytes) bytes of graph records")
        }
        #if os(Linux)
        if huge { _ = madvise(p, bytes, 14 /* MADV_HUGEPAGE */) }
        #endif
        memset(p, Int32(fill), bytes)
        return p
    }

    private func publish(_ chunk: UnsafeMutableRawPointer, owned isOwned: Bool) {
        lodestone_store_ptr(UnsafeMutableRawPointer(table + chunkCount).assumingMemoryBound(to: UnsafeMutableRawPointer?.self), chunk)
        owned.append(isOwned)
        chunkCount += 1
    }

    /// Uses `records` records laid out contiguously at `base` (a mapped
    /// section) as ids `0..<records` of this empty arena: whole chunks in
    /// place, the last partial chunk copied into memory of its own so that
    /// later records can follow it.
    func adopt(_ base: UnsafeMutableRawPointer, records: Int) {
        precondition(chunkCount == 0)
        var start = 0
        while start < records {
            let n = min(NodeArena.chunkSize, records - start)
            let source = base + start * stride
            if n == NodeArena.chunkSize {
                publish(source, owned: false)
            } else {
                let chunk = NodeArena.allocateChunk(stride: stride, fill: fill)
                chunk.copyMemory(from: source, byteCount: n * stride)
                publish(chunk, owned: true)
            }
            start += n
        }
    }

    /// The bytes of records `0..<records`, one range per chunk, for writing.
    func byteRanges(records: Int) -> [UnsafeRawBufferPointer] {
        var out: [UnsafeRawBufferPointer] = []
        var start = 0
        while start < records {
            let n = min(NodeArena.chunkSize, records - start)
            out.append(UnsafeRawBufferPointer(start: record(UInt32(start)), count: n * stride))
            start += n
        }
        return out
    }

    /// Allocates chunks until ids `0..<n` have records. Writer only.
    func reserve(_ n: Int) {
        precondition(n <= NodeArena.maxChunks << NodeArena.chunkShift, "Lodestone: node arena is full")
        while capacity < n { publish(NodeArena.allocateChunk(stride: stride, fill: fill), owned: true) }
    }

    /// The record of `id`, which must be below ``capacity``.
    @inline(__always)
    func record(_ id: UInt32) -> UnsafeMutableRawPointer {
        let chunk = lodestone_load_ptr(UnsafeRawPointer(table + Int(id >> UInt32(NodeArena.chunkShift)))
            .assumingMemoryBound(to: UnsafeMutableRawPointer?.self))
        return chunk.unsafelyUnwrapped + Int(id & NodeArena.chunkMask) * stride
    }
}
