import CLodestoneKernels

extension SparseIndex {
    /// The records of `allowed` (all when nil) whose dot product with
    /// `query` reaches `floor`, best first, at most `limit`: the sparse side
    /// of a hybrid query, whose dense side knows the score a record it
    /// missed needs.
    ///
    /// Only the terms a record must share to reach `floor` are read (the
    /// others together add less than it: MaxScore's essential terms). The
    /// ``floorWidening`` times `limit` records those terms score highest
    /// (to within a bin of a histogram of their scores) are then scored
    /// exactly from their own vectors. A record whose score comes mostly
    /// from the other terms can be missed, so the result is approximate,
    /// like the walk beside it; its scores are exact.
    ///
    /// Needs a finite `floor` and no value below zero stored (a partial
    /// score must be a lower bound): otherwise it is the exact search.
    ///
    /// `terms` (the query's ``QueryTermTable``) is built only when read.
    func search(_ query: SparseVector, terms: @autoclosure () -> QueryTermTable, floor: Float, limit: Int,
                allowed: Bitset?, slots: Int) -> [Neighbor] {
        guard floor.isFinite, !mayHoldNegative else {
            return search(query, k: limit, allowed: allowed, slots: slots, floor: floor)
        }
        let width = limit * Self.floorWidening
        let scratch = scratchPool.withLock { $0.popLast() } ?? SparseScratch()
        defer { scratchPool.withLock { $0.append(scratch) } }
        scratch.begin(slots: slots, k: limit)
        let cursors = cursors(for: query)
        // The terms left out add at most `rest`, less than the floor.
        var rest = cursors.reduce(Float(0)) { $0 + $1.upper }
        var essential = 0
        while essential < cursors.count && rest + Self.slack(floor) >= floor {
            rest -= cursors[essential].upper
            essential += 1
        }
        // Scores gather in `partials`, in the order first touched, so the
        // choice below reads them in order rather than across the cells.
        let touched = scratch.touched, partials = scratch.partials, epoch = scratch.epoch
        var count = 0
        scratch.cells.withMemoryRebound(to: UInt32.self, capacity: 2 * scratch.capacity) { cells in
            allowed.withWords { words, bits in
                for cursor in cursors[..<essential] {
                    cursor.postings.withMemoryRebound(to: lodestone_sparse_entry.self) { postings in
                        count = lodestone_sparse_gather(postings.baseAddress, postings.count, cursor.weight, cells,
                                                        epoch, words, bits, touched, partials, count)
                    }
                }
            }
        }
        scratch.touchedCount = count
        // Of those that can reach the floor, the `width` best by the terms
        // read.
        let bar = floor - rest - Self.slack(floor)
        let kept = lodestone_best_scores(partials, count, bar, width, scratch.chosen)
        var found = (0..<kept).map { i in
            let at = Int(scratch.chosen[i])
            return Neighbor(key: UInt64(touched[at]), score: partials[at])
        }
        if essential < cursors.count {
            let exact = dots(slots: found.map { UInt32($0.key) }, terms())
            for i in found.indices { found[i].score = exact[i] }
        }
        // The exact scores sum in another order than the partial ones: a
        // record at the floor keeps its place (as the exact search's slack).
        found.removeAll { $0.score < floor - Self.slack(floor) }
        found.sort { $0.score > $1.score || ($0.score == $1.score && $0.key < $1.key) }
        return Array(found.prefix(limit))
    }

    /// How many more records than wanted are scored exactly: enough that
    /// the terms left out rarely change which records reach the floor.
    static let floorWidening = 3
}

private extension Optional where Wrapped == Bitset {
    /// Runs `body` with the set's words and the slots they cover (nil and 0
    /// for no set: every slot).
    func withWords<R>(_ body: (UnsafePointer<UInt64>?, Int) -> R) -> R {
        guard let set = self else { return body(nil, 0) }
        guard set.capacity > 0 else {
            let none: UInt64 = 0
            return withUnsafePointer(to: none) { body($0, 0) }
        }
        return set.words.withUnsafeBufferPointer { body($0.baseAddress, set.capacity) }
    }
}
