#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a large arena's chunks come from once it has grown: slabs of
/// about 64 MB, aligned to and advised for transparent huge pages, carved
/// into chunks one after another. A chunk smaller than two huge pages is
/// otherwise a separate allocation the kernel backs with 4 KB pages, and a
/// graph walk over gigabytes of them misses the TLB at almost every record.
/// Chunks never move and are freed with their slab, when the owner goes.
/// Writer only.
final class ChunkSlabs {
    static let slabBytes = 64 << 20
    /// An arena takes slab chunks from this many bytes on, so a small index
    /// keeps its few chunks in ordinary pages.
    static let threshold = 8 << 20

    private var slabs: [UnsafeMutableRawPointer] = []
    private var next: UnsafeMutableRawPointer? = nil
    private var left = 0

    deinit { for s in slabs { free(s) } }

    /// Whether an arena of `chunks` chunks of `bytes` each takes its next
    /// chunk here.
    static func serves(chunks: Int, bytes: Int) -> Bool {
        bytes < 2 * NodeArena.hugePage && chunks * bytes >= threshold
    }

    /// A new chunk of `bytes`, filled with `fill`.
    func take(bytes: Int, fill: UInt8) -> UnsafeMutableRawPointer {
        if left == 0 {
            let perSlab = max(1, ChunkSlabs.slabBytes / bytes)
            let size = (perSlab * bytes + NodeArena.hugePage - 1) / NodeArena.hugePage * NodeArena.hugePage
            let p = SystemCalls.allocate(bytes: size, alignment: NodeArena.hugePage, what: "graph records")
            slabs.append(p)
            next = p
            left = perSlab
        }
        let chunk = next!
        next = chunk + bytes
        left -= 1
        memset(chunk, Int32(fill), bytes)
        return chunk
    }
}
