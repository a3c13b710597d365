/// One slot's score in a search, with the epoch of the query that wrote
/// it (side by side: one cache line per posting).
struct ScoreCell {
    var stamp: UInt32
    var score: Float
}

/// Memory one sparse search works in, reused so a query allocates nothing
/// per posting: a score per slot, stamped with the query's epoch instead of
/// cleared, and the list of slots scored.
final class SparseScratch {
    private(set) var cells: UnsafeMutablePointer<ScoreCell>
    /// Slots scored by the query, in the order first scored.
    private(set) var touched: UnsafeMutablePointer<UInt32>
    /// In a search with a floor, the touched slots' scores, in the same
    /// order (each slot's cell holds its stamp and where its score is:
    /// `lodestone_sparse_gather`).
    private(set) var partials: UnsafeMutablePointer<Float>
    /// Positions in `partials` a search with a floor keeps.
    private(set) var chosen: UnsafeMutablePointer<UInt32>
    var touchedCount = 0
    private(set) var capacity = 0
    private(set) var epoch: UInt32 = 0
    /// One bit per slot: the candidates of the query's last phase (all
    /// clear between queries).
    private(set) var marks: UnsafeMutablePointer<UInt64>
    private(set) var heap: UnsafeMutablePointer<Candidate>
    private var heapCapacity = 0

    init() {
        cells = .allocate(capacity: 1)
        touched = .allocate(capacity: 1)
        partials = .allocate(capacity: 1)
        chosen = .allocate(capacity: 1)
        marks = .allocate(capacity: 1)
        heap = .allocate(capacity: 1)
    }

    deinit {
        cells.deallocate()
        touched.deallocate()
        partials.deallocate()
        chosen.deallocate()
        marks.deallocate()
        heap.deallocate()
    }

    /// Starts a query over `slots` slots, keeping the best `k`.
    func begin(slots: Int, k: Int) {
        if slots > capacity {
            cells.deallocate()
            touched.deallocate()
            partials.deallocate()
            capacity = max(slots, capacity * 2)
            cells = .allocate(capacity: capacity)
            cells.initialize(repeating: ScoreCell(stamp: 0, score: 0), count: capacity)
            touched = .allocate(capacity: capacity)
            partials = .allocate(capacity: capacity)
            chosen.deallocate()
            chosen = .allocate(capacity: capacity)
            marks.deallocate()
            marks = .allocate(capacity: capacity / 64 + 1)
            marks.initialize(repeating: 0, count: capacity / 64 + 1)
            epoch = 0
        }
        if k > heapCapacity {
            heap.deallocate()
            heapCapacity = k
            heap = .allocate(capacity: k)
        }
        epoch &+= 1
        if epoch == 0 {
            cells.update(repeating: ScoreCell(stamp: 0, score: 0), count: capacity)
            epoch = 1
        }
        touchedCount = 0
    }

    /// The slots scored so far.
    var touchedSlots: UnsafeBufferPointer<UInt32> { UnsafeBufferPointer(start: touched, count: touchedCount) }
}

/// One query term during a search: its postings, weight and the bounds of
/// what it can add to a record's score.
struct TermCursor {
    var postings: UnsafeBufferPointer<SparseEntry>
    var weight: Float
    /// At most / at least what the term adds to any record's score (0 for
    /// a record without it).
    var upper: Float
    var lower: Float
}

extension SparseIndex {
    /// The `k` records with the largest dot product with `query` (indices
    /// ascending) among `allowed` (all when nil), best first; only records
    /// sharing a term with the query are results. Exact.
    ///
    /// Term at a time, largest possible contribution first (MaxScore): once
    /// the terms left cannot lift a record that has none of the terms so far
    /// above the k-th best score, the rest only add to the records already
    /// scored that can still make the top k (the candidates), looked up in
    /// the postings or read through them, whichever reads less.
    ///
    /// `floor`, when given, is a score below which no record is wanted (a
    /// hybrid query knows one from its dense side): records that cannot
    /// reach it are dropped as early as those that cannot reach the k-th
    /// best, so fewer than k may come back.
    func search(_ query: SparseVector, k: Int, allowed: Bitset?, slots: Int, floor: Float = -.infinity) -> [Neighbor] {
        let scratch = scratchPool.withLock { $0.popLast() } ?? SparseScratch()
        defer { scratchPool.withLock { $0.append(scratch) } }
        scratch.begin(slots: slots, k: k)
        let cursors = cursors(for: query)
        var remainingUpper = cursors.reduce(Float(0)) { $0 + $1.upper }
        var remainingLower = cursors.reduce(Float(0)) { $0 + $1.lower }
        let cells = scratch.cells, touched = scratch.touched, epoch = scratch.epoch, marks = scratch.marks
        var candidates: [UInt32]? = nil
        var sorted = false
        // The best partial score so far: while the terms left could add
        // more, no record is safe yet and the k-th best is not worth finding.
        var best = -Float.infinity
        for cursor in cursors {
            remainingUpper -= cursor.upper
            remainingLower -= cursor.lower
            let w = cursor.weight
            if var list = candidates {
                let n = cursor.postings.count
                if list.count * Self.lookupCost(candidates: list.count, postings: n) < n {
                    if !sorted {
                        list.sort()
                        sorted = true
                    }
                    Self.addByLookup(list, cursor.postings, weight: w, cells: cells)
                } else {
                    // Read through, adding to the marked candidates (the marks fit in L1).
                    for p in cursor.postings where marks[Int(p.key &>> 6)] & (1 &<< UInt64(p.key & 63)) != 0 {
                        cells[Int(p.key)].score += w * p.value
                    }
                }
                candidates = Self.prune(list, k: k, floor: floor, remainingUpper: remainingUpper,
                                        remainingLower: remainingLower, cells: cells, marks: marks, heap: scratch.heap)
                continue
            }
            var count = scratch.touchedCount
            for p in cursor.postings {
                let s = Int(p.key)
                if let allowed, !allowed.contains(s) { continue }
                let cell = cells + s
                if cell.pointee.stamp != epoch {
                    cell.pointee = ScoreCell(stamp: epoch, score: w * p.value)
                    touched[count] = p.key
                    count += 1
                } else {
                    cell.pointee.score += w * p.value
                }
                best = max(best, cell.pointee.score)
            }
            scratch.touchedCount = count
            // Switch to the candidates once a record seen in none of the
            // terms so far cannot reach the k-th best.
            let belowFloor = remainingUpper + Self.slack(floor) < floor
            guard belowFloor || (count >= k && remainingUpper + Self.slack(best) < best + remainingLower) else { continue }
            // Ranked, then filtered, straight from the cells (a copy of the
            // scores would be a large allocation per query).
            var heap = TopKHeap(storage: scratch.heap, capacity: k)
            for s in scratch.touchedSlots {
                let c = Candidate(distance: -cells[Int(s)].score, id: UInt64(s))
                if c.distance < heap.threshold { heap.consider(c) }
            }
            // What a record must reach: the floor, and the k-th best's score
            // plus the least the terms left add to it.
            let target = max(floor, count >= k ? -heap.threshold + remainingLower : -.infinity)
            if remainingUpper + Self.slack(target) < target {
                let bar = target - remainingUpper - Self.slack(target)
                var list: [UInt32] = []
                for s in scratch.touchedSlots where cells[Int(s)].score >= bar {
                    list.append(s)
                    marks[Int(s &>> 6)] |= 1 &<< UInt64(s & 63)
                }
                candidates = list
            }
        }
        var heap = TopKHeap(storage: scratch.heap, capacity: k)
        if let candidates {
            for s in candidates {
                heap.consider(Candidate(distance: -cells[Int(s)].score, id: UInt64(s)))
                marks[Int(s &>> 6)] = 0  // left clear for the next query
            }
        } else {
            for s in scratch.touchedSlots { heap.consider(Candidate(distance: -cells[Int(s)].score, id: UInt64(s))) }
        }
        return heap.drainSorted().map { Neighbor(key: $0.id, score: -$0.distance) }
    }

    /// The query's terms that some record holds, largest possible
    /// contribution first.
    func cursors(for query: SparseVector) -> [TermCursor] {
        var cursors: [TermCursor] = []
        for (t, w) in zip(query.indices, query.values) where w != 0 {
            guard let p = postings(term: t) else { continue }
            let a = w * p.maxValue, b = w * p.minValue
            cursors.append(TermCursor(postings: p.entries, weight: w, upper: max(0, a, b), lower: min(0, a, b)))
        }
        cursors.sort { $0.upper > $1.upper }
        return cursors
    }

    /// Postings read per candidate looked up by galloping: about the
    /// logarithm of the gap between candidates (each probe a likely cache
    /// miss, so weighed as several sequential reads).
    @inline(__always) private static func lookupCost(candidates: Int, postings: Int) -> Int {
        8 * (1 + (Int.bitWidth - (postings / max(candidates, 1)).leadingZeroBitCount))
    }

    /// A margin for the rounding of scores and bounds summed in different
    /// orders, so pruning never drops a record that ties.
    @inline(__always) static func slack(_ score: Float) -> Float { 1e-6 + abs(score) * 1e-5 }

    /// The candidates that can still reach the top k: a record whose score
    /// plus all that the remaining terms could add falls below the k-th
    /// best's score plus the least they could add is dropped (and unmarked).
    private static func prune(_ list: [UInt32], k: Int, floor: Float, remainingUpper: Float, remainingLower: Float,
                              cells: UnsafeMutablePointer<ScoreCell>, marks: UnsafeMutablePointer<UInt64>,
                              heap storage: UnsafeMutablePointer<Candidate>) -> [UInt32] {
        var target = floor
        if list.count > k {
            var heap = TopKHeap(storage: storage, capacity: k)
            for s in list {
                let c = Candidate(distance: -cells[Int(s)].score, id: UInt64(s))
                if c.distance < heap.threshold { heap.consider(c) }
            }
            target = max(target, -heap.threshold + remainingLower)
        }
        guard target > -.infinity else { return list }
        let bar = target - remainingUpper - slack(target)
        return list.filter { s in
            if cells[Int(s)].score >= bar { return true }
            marks[Int(s &>> 6)] &= ~(1 &<< UInt64(s & 63))
            return false
        }
    }

    /// Adds a term's contribution to the candidates (ascending slots),
    /// galloping through its postings (ascending slots) to each.
    private static func addByLookup(_ list: [UInt32], _ postings: UnsafeBufferPointer<SparseEntry>, weight: Float,
                                    cells: UnsafeMutablePointer<ScoreCell>) {
        guard let base = postings.baseAddress else { return }
        let n = postings.count
        var at = 0
        for s in list {
            // Gallop to the first posting at or after s, then binary search.
            var step = 1, hi = at
            while hi < n && base[hi].key < s {
                at = hi + 1
                hi = at + step
                step <<= 1
            }
            hi = min(hi, n)
            while at < hi {
                let mid = (at + hi) >> 1
                if base[mid].key < s { at = mid + 1 } else { hi = mid }
            }
            if at == n { break }
            if base[at].key == s { cells[Int(s)].score += weight * base[at].value }
        }
    }
}
