#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Rows of Float32 vectors in one contiguous, 64-byte-aligned allocation.
///
/// Each row starts on a 64-byte boundary: the stride is the dimension rounded
/// up to 16 floats, and the padding is zero. Alongside each row it keeps the
/// row's key and squared norm (the batch search needs the norms for L2).
/// Rows stay dense: removing a row moves the last row into its place.
///
/// It is a reference type so that ``FlatIndex`` can give it value semantics
/// by copy-on-write; it is not safe to mutate from two threads.
final class VectorStore: @unchecked Sendable {
    // @unchecked: mutated only through a uniquely referenced FlatIndex
    // (copy-on-write), read concurrently only while nobody mutates it.

    let dimension: Int
    /// Floats from one row to the next: `dimension` rounded up to 16.
    let stride: Int
    private(set) var count = 0
    private(set) var capacity = 0
    private(set) var base: UnsafeMutablePointer<Float>
    /// The key of each row.
    private(set) var keys: [UInt64] = []
    /// The squared L2 norm of each row.
    private(set) var squaredNorms: [Float] = []
    /// An upper bound of every row's L2 norm (never lowered by removals).
    private(set) var maxNorm: Float = 0

    static let alignment = 64

    init(dimension: Int, capacity: Int = 0) {
        precondition(dimension > 0)
        self.dimension = dimension
        self.stride = (dimension + 15) & ~15
        self.base = VectorStore.allocate(rows: 0, stride: stride)
        reserve(capacity)
    }

    /// False when `base` points into a mapped segment (kept alive by
    /// `mapping`): the rows are then used in place, and the first growth
    /// copies them into memory of our own.
    private var ownsBase = true
    private var mapping: AnyObject?

    deinit { if ownsBase { free(base) } }

    /// A store over `count` rows already laid out at `rows` (stride floats
    /// apart) inside `mapping`, with their keys and squared norms.
    init(dimension: Int, adopting rows: UnsafeMutablePointer<Float>, count: Int, keys: [UInt64], squaredNorms: [Float],
         mapping: AnyObject) {
        self.dimension = dimension
        self.stride = (dimension + 15) & ~15
        self.base = rows
        self.count = count
        self.capacity = count
        self.keys = keys
        self.squaredNorms = squaredNorms
        self.maxNorm = squaredNorms.reduce(0) { max($0, $1.squareRoot().nextUp) }
        self.ownsBase = false
        self.mapping = mapping
    }

    /// Large stores are aligned to 2 MiB and marked for transparent huge
    /// pages: a scan then walks ~1/500 as many TLB entries (measured a few
    /// percent faster on a 150 MB flat scan where THP is in `madvise` mode).
    static let hugePageSize = SystemCalls.hugePageSize

    private static func allocate(rows: Int, stride: Int) -> UnsafeMutablePointer<Float> {
        var bytes = max(rows * stride * MemoryLayout<Float>.size, alignment)
        let huge = bytes >= 2 * hugePageSize
        if huge { bytes = (bytes + hugePageSize - 1) / hugePageSize * hugePageSize }
        let raw = SystemCalls.allocate(bytes: bytes, alignment: alignment, what: "vectors")
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        return raw.bindMemory(to: Float.self, capacity: bytes / MemoryLayout<Float>.size)
    }

    /// A deep copy, for copy-on-write.
    func copy() -> VectorStore {
        let other = VectorStore(dimension: dimension, capacity: capacity)
        other.base.update(from: base, count: count * stride)
        other.count = count
        other.keys = keys
        other.squaredNorms = squaredNorms
        other.maxNorm = maxNorm
        return other
    }

    /// Makes room for `rows` rows in total.
    func reserve(_ rows: Int) {
        guard rows > capacity else { return }
        let newBase = VectorStore.allocate(rows: rows, stride: stride)
        newBase.update(from: base, count: count * stride)
        if ownsBase { free(base) }
        base = newBase
        ownsBase = true
        mapping = nil
        capacity = rows
        keys.reserveCapacity(rows)
        squaredNorms.reserveCapacity(rows)
    }

    @inline(__always) func row(_ slot: Int) -> UnsafeMutablePointer<Float> {
        base + slot * stride
    }

    /// Appends a row copied from `vector` (which holds `dimension` floats).
    func append(_ vector: UnsafePointer<Float>, key: UInt64, squaredNorm: Float) {
        if count == capacity { reserve(max(16, capacity * 2)) }
        row(count).update(from: vector, count: dimension)
        keys.append(key)
        squaredNorms.append(squaredNorm)
        maxNorm = max(maxNorm, squaredNorm.squareRoot().nextUp)
        count += 1
    }

    /// Overwrites the row at `slot`.
    func overwrite(_ slot: Int, with vector: UnsafePointer<Float>, squaredNorm: Float) {
        row(slot).update(from: vector, count: dimension)
        squaredNorms[slot] = squaredNorm
        maxNorm = max(maxNorm, squaredNorm.squareRoot().nextUp)
    }

    /// Removes the row at `slot` by moving the last row into it. Returns the
    /// key of the row that moved into `slot`, or nil if `slot` was the last.
    func removeBySwappingLast(_ slot: Int) -> UInt64? {
        let last = count - 1
        var moved: UInt64? = nil
        if slot != last {
            row(slot).update(from: row(last), count: stride)
            keys[slot] = keys[last]
            squaredNorms[slot] = squaredNorms[last]
            moved = keys[slot]
        }
        row(last).update(repeating: 0, count: stride)
        keys.removeLast()
        squaredNorms.removeLast()
        count -= 1
        return moved
    }

    func removeAll() {
        base.update(repeating: 0, count: count * stride)
        keys.removeAll(keepingCapacity: true)
        squaredNorms.removeAll(keepingCapacity: true)
        count = 0
        maxNorm = 0
    }
}
