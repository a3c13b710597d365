/// Memory one sparse search works in, reused so a query allocates nothing
/// per posting: a score per slot, stamped with the query's epoch instead of
/// cleared, and the list of slots scored.
final class SparseScratch {
    private(set) var scores: UnsafeMutablePointer<Float>
    private(set) var stamps: UnsafeMutablePointer<UInt32>
    private(set) var capacity = 0
    private(set) var epoch: UInt32 = 0
    var touched: [UInt32] = []
    var heap: UnsafeMutablePointer<Candidate>
    private var heapCapacity = 0

    init() {
        scores = .allocate(capacity: 1)
        stamps = .allocate(capacity: 1)
        heap = .allocate(capacity: 1)
    }

    deinit {
        scores.deallocate()
        stamps.deallocate()
        heap.deallocate()
    }

    /// Starts a query over `slots` slots, keeping the best `k`.
    func begin(slots: Int, k: Int) {
        if slots > capacity {
            scores.deallocate()
            stamps.deallocate()
            capacity = max(slots, capacity * 2)
            scores = .allocate(capacity: capacity)
            stamps = .allocate(capacity: capacity)
            stamps.initialize(repeating: 0, count: capacity)
            epoch = 0
        }
        if k > heapCapacity {
            heap.deallocate()
            heapCapacity = k
            heap = .allocate(capacity: k)
        }
        epoch &+= 1
        if epoch == 0 {
            stamps.update(repeating: 0, count: capacity)
            epoch = 1
        }
        touched.removeAll(keepingCapacity: true)
    }
}

/// One query term during a search: its postings, weight and the bounds of
/// what it can add to a record's score.
private struct TermCursor {
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
    /// scored, looked up by slot in their postings.
    func search(_ query: SparseVector, k: Int, allowed: Bitset?, slots: Int) -> [Neighbor] {
        let scratch = scratchPool.withLock { $0.popLast() } ?? SparseScratch()
        defer { scratchPool.withLock { $0.append(scratch) } }
        scratch.begin(slots: slots, k: k)
        var cursors: [TermCursor] = []
        for (t, w) in zip(query.indices, query.values) where w != 0 {
            guard let p = postings(term: t) else { continue }
            let a = w * p.maxValue, b = w * p.minValue
            cursors.append(TermCursor(postings: p.entries, weight: w, upper: max(0, a, b), lower: min(0, a, b)))
        }
        cursors.sort { $0.upper > $1.upper }
        var remainingUpper = cursors.reduce(Float(0)) { $0 + $1.upper }
        var remainingLower = cursors.reduce(Float(0)) { $0 + $1.lower }
        let scores = scratch.scores, stamps = scratch.stamps, epoch = scratch.epoch
        var candidates: [UInt32]? = nil  // set once new records can no longer make the top k
        for cursor in cursors {
            remainingUpper -= cursor.upper
            remainingLower -= cursor.lower
            let w = cursor.weight
            if var list = candidates {
                Self.addToCandidates(&list, cursor.postings, weight: w, scores: scores)
                candidates = Self.prune(list, k: k, remainingUpper: remainingUpper, remainingLower: remainingLower,
                                        scores: scores, heap: scratch.heap)
                continue
            }
            for p in cursor.postings {
                let s = Int(p.key)
                if let allowed, !allowed.contains(s) { continue }
                if stamps[s] != epoch {
                    stamps[s] = epoch
                    scores[s] = 0
                    scratch.touched.append(p.key)
                }
                scores[s] += w * p.value
            }
            // Switch to scoring only the records seen once a record seen in
            // none of the terms so far cannot reach the k-th best.
            if scratch.touched.count >= k && remainingUpper > 0 {
                let kth = Self.kthBest(scratch.touched, k: k, scores: scores, heap: scratch.heap)
                if remainingUpper + Self.slack(kth) < kth + remainingLower {
                    var list = scratch.touched
                    list.sort()
                    candidates = Self.prune(list, k: k, remainingUpper: remainingUpper, remainingLower: remainingLower,
                                            scores: scores, heap: scratch.heap)
                }
            }
        }
        var heap = TopKHeap(storage: scratch.heap, capacity: k)
        for s in candidates ?? scratch.touched { heap.consider(Candidate(distance: -scores[Int(s)], id: UInt64(s))) }
        return heap.drainSorted().map { Neighbor(key: $0.id, score: -$0.distance) }
    }

    /// A margin for the rounding of scores and bounds summed in different
    /// orders, so pruning never drops a record that ties.
    @inline(__always) private static func slack(_ score: Float) -> Float { 1e-6 + abs(score) * 1e-5 }

    /// The k-th best score among `slots` (k of them at least).
    private static func kthBest(_ slots: [UInt32], k: Int, scores: UnsafeMutablePointer<Float>,
                                heap storage: UnsafeMutablePointer<Candidate>) -> Float {
        var heap = TopKHeap(storage: storage, capacity: k)
        for s in slots {
            let c = Candidate(distance: -scores[Int(s)], id: UInt64(s))
            if c.distance < heap.threshold { heap.consider(c) }
        }
        return -heap.threshold
    }

    /// The candidates that can still reach the top k: a record whose score
    /// plus all that the remaining terms could add falls below the k-th
    /// best's score plus the least they could add is dropped.
    private static func prune(_ list: [UInt32], k: Int, remainingUpper: Float, remainingLower: Float,
                              scores: UnsafeMutablePointer<Float>, heap: UnsafeMutablePointer<Candidate>) -> [UInt32] {
        guard list.count > k else { return list }
        let kth = kthBest(list, k: k, scores: scores, heap: heap)
        let bar = kth + remainingLower - remainingUpper - slack(kth)
        return list.filter { scores[Int($0)] >= bar }
    }

    /// Adds a term's contribution to the candidates (ascending slots),
    /// galloping through its postings (ascending slots) to each.
    private static func addToCandidates(_ list: inout [UInt32], _ postings: UnsafeBufferPointer<SparseEntry>, weight: Float,
                                        scores: UnsafeMutablePointer<Float>) {
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
            if base[at].key == s { scores[Int(s)] += weight * base[at].value }
        }
    }
}
