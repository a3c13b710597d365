import CLodestoneKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One entry of a search's candidate pool: a rank value and a node id whose
/// top bit marks "already expanded".
@usableFromInline
struct PoolEntry {
    @usableFromInline var distance: Float
    @usableFromInline var tagged: UInt32

    @inlinable init(distance: Float, id: UInt32) {
        self.distance = distance
        self.tagged = id
    }

    static let expandedBit: UInt32 = 1 << 31
    @inline(__always) var id: UInt32 { tagged & ~PoolEntry.expandedBit }
    @inline(__always) var isExpanded: Bool { tagged & PoolEntry.expandedBit != 0 }

    /// Inserts `entry` into `pool`, `count` entries sorted by distance and
    /// at most `capacity` (when full, the last one drops out), after the
    /// entries no farther than it; returns its position.
    @inline(__always)
    static func insert(_ entry: PoolEntry, into pool: UnsafeMutablePointer<PoolEntry>, count: inout Int,
                       capacity: Int) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if pool[mid].distance <= entry.distance { lo = mid + 1 } else { hi = mid }
        }
        let moving = (count == capacity ? count - 1 : count) - lo
        if moving > 0 { (pool + lo + 1).update(from: pool + lo, count: moving) }
        pool[lo] = entry
        if count < capacity { count += 1 }
        return lo
    }
}

/// Memory one search works in, reused across searches so a query allocates
/// nothing in steady state: the visited marks (generation-stamped: a new
/// search bumps the generation instead of clearing), the candidate pool,
/// and buffers for one node's neighbours.
final class SearchScratch {
    private(set) var visited: UnsafeMutablePointer<UInt16>
    private(set) var visitedCapacity = 0
    private(set) var generation: UInt16 = 0

    private(set) var pool: UnsafeMutablePointer<PoolEntry>
    private(set) var poolCapacity = 0

    /// Neighbour ids, their row pointers and rank values (one node's worth).
    let ids: UnsafeMutablePointer<UInt32>
    let rows: UnsafeMutablePointer<UnsafePointer<Float>?>
    let values: UnsafeMutablePointer<Float>
    let neighbourCapacity: Int
    /// A filtered walk's neighbours that do not pass the filter (it looks
    /// through them to their neighbours).
    let transit: UnsafeMutablePointer<UInt32>

    /// A min-heap of candidates and a bounded max-heap of results, for the
    /// filtered search.
    private(set) var heap: UnsafeMutablePointer<Candidate>
    private(set) var heapCapacity = 0
    private(set) var results: UnsafeMutablePointer<Candidate>
    private(set) var resultsCapacity = 0

    /// The quantized walk's lookup table and a block's estimates (see
    /// ``reserveCodeBuffers(table:estimates:)``).
    private(set) var table: UnsafeMutablePointer<UInt8>
    private(set) var tableCapacity = 0
    private(set) var estimates: UnsafeMutablePointer<Float>
    private(set) var estimatesCapacity = 0
    /// Per batch of 32 estimates, the bits of those below the beam's bound.
    private(set) var estimateMasks: UnsafeMutablePointer<UInt32>

    /// Work counters for `explain`: nodes whose links were read and
    /// distances computed since the caller last reset them.
    var nodesExpanded = 0
    var distancesComputed = 0

    init(maxNeighbours: Int) {
        neighbourCapacity = maxNeighbours
        ids = .allocate(capacity: maxNeighbours)
        rows = .allocate(capacity: maxNeighbours)
        values = .allocate(capacity: maxNeighbours)
        transit = .allocate(capacity: maxNeighbours)
        visited = SearchScratch.allocateMarks(1)
        pool = .allocate(capacity: 1)
        heap = .allocate(capacity: 1)
        results = .allocate(capacity: 1)
        table = .allocate(capacity: 1)
        estimates = .allocate(capacity: 1)
        estimateMasks = .allocate(capacity: 1)
    }

    deinit {
        ids.deallocate()
        rows.deallocate()
        values.deallocate()
        transit.deallocate()
        free(visited)
        pool.deallocate()
        heap.deallocate()
        results.deallocate()
        table.deallocate()
        estimates.deallocate()
        estimateMasks.deallocate()
    }

    /// Room for `count` visited marks: past a few megabytes, on huge pages,
    /// since a walk stamps them at random.
    private static func allocateMarks(_ count: Int) -> UnsafeMutablePointer<UInt16> {
        SystemCalls.allocate(bytes: count * MemoryLayout<UInt16>.stride, alignment: 64, what: "search marks")
            .bindMemory(to: UInt16.self, capacity: count)
    }

    /// Starts a search over node ids below `nodes`: returns the generation
    /// that marks a node as visited in this search.
    func beginSearch(nodes: Int, poolSize: Int) -> UInt16 {
        if nodes > visitedCapacity {
            free(visited)
            let capacity = max(nodes, visitedCapacity * 2, 1024)
            visited = SearchScratch.allocateMarks(capacity)
            visited.initialize(repeating: 0, count: capacity)
            visitedCapacity = capacity
            generation = 0
        }
        if poolSize + 1 > poolCapacity {
            pool.deallocate()
            poolCapacity = poolSize + 1
            pool = .allocate(capacity: poolCapacity)
        }
        generation &+= 1
        if generation == 0 {
            visited.update(repeating: 0, count: visitedCapacity)
            generation = 1
        }
        return generation
    }

    /// Makes room for `n` candidates in the min-heap, keeping its contents.
    func reserveHeap(_ n: Int) {
        guard n > heapCapacity else { return }
        let capacity = max(n, heapCapacity * 2, 64)
        let bigger = UnsafeMutablePointer<Candidate>.allocate(capacity: capacity)
        bigger.moveInitialize(from: heap, count: heapCapacity)
        heap.deallocate()
        heap = bigger
        heapCapacity = capacity
    }

    /// Makes room for a lookup table of `table` bytes and `estimates`
    /// estimates (the quantized walk's).
    func reserveCodeBuffers(table bytes: Int, estimates n: Int) {
        if bytes > tableCapacity {
            table.deallocate()
            table = .allocate(capacity: bytes)
            tableCapacity = bytes
        }
        if n > estimatesCapacity {
            estimates.deallocate()
            estimateMasks.deallocate()
            estimates = .allocate(capacity: n)
            estimateMasks = .allocate(capacity: (n + 31) / 32)
            estimatesCapacity = n
        }
    }

    /// Makes room for `n` results.
    func reserveResults(_ n: Int) {
        guard n > resultsCapacity else { return }
        results.deallocate()
        resultsCapacity = n
        results = .allocate(capacity: n)
    }
}

/// A lock-free pool of scratch spaces, which also tracks reader epochs.
///
/// A search claims a free slot with one atomic exchange and records the
/// epoch it started in; it hands the slot back with two stores. A writer
/// that has made nodes unreachable advances the epoch and may reuse their
/// memory once no search that started before is still running
/// (``oldestActiveEpoch``): a grace period, as in RCU.
final class ScratchPool: @unchecked Sendable {
    // @unchecked: slot i's scratch is touched only by the thread holding
    // lock i; epochs are sequentially consistent atomics.
    static let slots = 64
    private let locks: UnsafeMutablePointer<UInt8>
    private let epochs: UnsafeMutablePointer<UInt64>
    private let scratches: UnsafeMutablePointer<SearchScratch?>
    private let globalEpoch: UnsafeMutablePointer<UInt64>
    let maxNeighbours: Int

    init(maxNeighbours: Int) {
        self.maxNeighbours = maxNeighbours
        locks = .allocate(capacity: ScratchPool.slots)
        locks.initialize(repeating: 0, count: ScratchPool.slots)
        epochs = .allocate(capacity: ScratchPool.slots)
        epochs.initialize(repeating: 0, count: ScratchPool.slots)
        scratches = .allocate(capacity: ScratchPool.slots)
        scratches.initialize(repeating: nil, count: ScratchPool.slots)
        globalEpoch = .allocate(capacity: 1)
        globalEpoch.initialize(to: 1)
    }

    deinit {
        scratches.deinitialize(count: ScratchPool.slots).deallocate()
        locks.deallocate()
        epochs.deallocate()
        globalEpoch.deallocate()
    }

    /// Starts a new epoch and returns it: searches that start from now on
    /// see every change made before this call.
    func advanceEpoch() -> UInt64 { lodestone_add_u64_seq(globalEpoch, 1) }

    /// The oldest epoch a running search started in (`UInt64.max` if none).
    func oldestActiveEpoch() -> UInt64 {
        var oldest = UInt64.max
        for i in 0..<ScratchPool.slots {
            let e = lodestone_load_u64_seq(epochs + i)
            if e != 0 && e < oldest { oldest = e }
        }
        return oldest
    }

    /// Runs `body` with a scratch space no other thread is using, registered
    /// as a reader of the current epoch.
    func withScratch<R>(_ body: (SearchScratch) throws -> R) rethrows -> R {
        var start = 0
        #if canImport(Glibc)
        start = Int(truncatingIfNeeded: (pthread_self() >> 8) % UInt(ScratchPool.slots))
        #endif
        var probe = 0
        while true {
            let i = (start + probe) % ScratchPool.slots
            probe += 1
            if lodestone_try_lock(locks + i) == 1 {
                defer {
                    lodestone_store_u64_seq(epochs + i, 0)
                    lodestone_spin_unlock(locks + i)
                }
                // Publish our epoch, then confirm it is still current, so a
                // writer either sees us or we see its newer epoch.
                var e = lodestone_load_u64_seq(globalEpoch)
                while true {
                    lodestone_store_u64_seq(epochs + i, e)
                    let now = lodestone_load_u64_seq(globalEpoch)
                    if now == e { break }
                    e = now
                }
                let scratch: SearchScratch
                if let existing = scratches[i] {
                    scratch = existing
                } else {
                    scratch = SearchScratch(maxNeighbours: maxNeighbours)
                    scratches[i] = scratch
                }
                return try body(scratch)
            }
            if probe % ScratchPool.slots == 0 { sched_yield() }  // all busy: wait for one
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
