import CLodestoneKernels

/// Which nodes a search may return. Traversal still walks through every
/// node; only results are restricted (the filter applies during traversal,
/// so the search keeps going until it has found `ef` admitted nodes).
protocol NodeAdmission {
    func admits(_ id: UInt32) -> Bool
}

/// Sees every node a beam search scores (its id and rank value).
protocol NodeCollector {
    mutating func observe(_ id: UInt32, _ distance: Float)
}

/// Sees nothing (the plain search; compiled away).
struct NoCollector: NodeCollector {
    /// Not zero-sized: ThreadSanitizer instruments the `inout` access to a
    /// collector by its address, and a zero-sized value has none it can
    /// map (it crashed with SEGV in its shadow-memory lookup).
    private var unused: UInt8 = 0
    @inline(__always) mutating func observe(_ id: UInt32, _ distance: Float) {}
}

/// Keeps the best scored nodes that pass a filter, in a bounded heap: the
/// filtered search that walks the graph as if unfiltered.
struct AdmittedCollector<A: NodeAdmission>: NodeCollector {
    let admission: A
    var heap: TopKHeap
    @inline(__always) mutating func observe(_ id: UInt32, _ distance: Float) {
        if distance < heap.threshold, admission.admits(id) { heap.consider(Candidate(distance: distance, id: UInt64(id))) }
    }
}

/// Chooses, after a beam search expands a node, which nodes it scores.
protocol NeighbourGatherer {
    /// Copies the nodes to score into `scratch.ids`/`scratch.rows`, marking
    /// them visited; returns how many.
    func gather(_ index: HNSWIndex, of id: UInt32, layer: Int, scratch: SearchScratch,
                marks: UnsafeMutablePointer<UInt16>, generation: UInt16, bound: Int) -> Int
}

/// Every unvisited neighbour (the plain HNSW search).
struct AllNeighbours: NeighbourGatherer {
    @inline(__always)
    func gather(_ index: HNSWIndex, of id: UInt32, layer: Int, scratch: SearchScratch,
                marks: UnsafeMutablePointer<UInt16>, generation: UInt16, bound: Int) -> Int {
        index.gatherNeighbours(of: id, layer: layer, scratch: scratch, visited: (marks, generation, bound))
    }
}

/// The neighbours, and neighbours' neighbours, that pass a filter (see
/// ``HNSWIndex/gatherAdmitted(of:scratch:rows:source:marks:generation:bound:admission:)``; layer 0 only).
struct AdmittedNeighbours<A: NodeAdmission>: NeighbourGatherer {
    let admission: A
    @inline(__always)
    func gather(_ index: HNSWIndex, of id: UInt32, layer: Int, scratch: SearchScratch,
                marks: UnsafeMutablePointer<UInt16>, generation: UInt16, bound: Int) -> Int {
        scratch.rows.withMemoryRebound(to: UnsafeRawPointer?.self, capacity: scratch.neighbourCapacity) { rows in
            index.gatherAdmitted(of: id, scratch: scratch, rows: rows, source: VectorRows(index: index),
                                 marks: marks, generation: generation, bound: bound, admission: admission)
        }
    }
}

/// Where a gather finds what a node is scored from.
protocol NodeRows {
    func row(_ id: UInt32) -> UnsafeRawPointer
}

/// A node's float32 vector (the exact walk).
struct VectorRows: NodeRows {
    let index: HNSWIndex
    @inline(__always) func row(_ id: UInt32) -> UnsafeRawPointer { UnsafeRawPointer(index.vector(id)) }
}

/// Admits live nodes.
struct LiveNodes: NodeAdmission {
    let index: HNSWIndex
    @inline(__always) func admits(_ id: UInt32) -> Bool { index.state(id) == .live }
}

/// Admits live nodes whose key passes a predicate.
struct LiveKeysPassing: NodeAdmission {
    let index: HNSWIndex
    let predicate: (UInt64) -> Bool
    @inline(__always) func admits(_ id: UInt32) -> Bool { index.state(id) == .live && predicate(index.key(id)) }
}

extension HNSWIndex {
    // MARK: Public search

    /// The approximately `k` nearest live vectors to `query`, best first.
    ///
    /// - Parameters:
    ///   - query: the query vector (the index's dimension).
    ///   - k: results wanted, 1 or more.
    ///   - ef: the beam width (default ``HNSWParameters/efSearch``; raised to
    ///     `k`). Higher is slower and more accurate.
    /// - Throws: ``LodestoneError/invalidArgument(name:reason:)`` for `k < 1`
    ///   or `ef < 1`, ``LodestoneError/emptyIndex``, or the query's
    ///   validation errors (dimension, non-finite, zero under cosine).
    public func search(_ query: [Float], k: Int, ef: Int? = nil) throws(LodestoneError) -> [Neighbor] {
        let (q, efs) = try prepareSearch(query, k: k, ef: ef)
        let result = q.withUnsafeBufferPointer { qp in
            scratchPool.withScratch { scratch in
                searchPrepared(qp.baseAddress!, k: k, ef: efs, scratch: scratch)
            }
        }
        if let failure = corruption() { throw failure }
        return result
    }

    /// Like ``search(_:k:ef:)``, returning only vectors whose key passes
    /// `predicate`. The predicate runs during the traversal, on the nodes the
    /// search reaches, so the search widens until it has `ef` matches or the
    /// graph runs out (very selective filters are the planner's job: scan them).
    public func search(_ query: [Float], k: Int, ef: Int? = nil, where predicate: (UInt64) -> Bool)
        throws(LodestoneError) -> [Neighbor]
    {
        let (q, efs) = try prepareSearch(query, k: k, ef: ef)
        let result = withoutActuallyEscaping(predicate) { predicate in
            q.withUnsafeBufferPointer { qp in
                scratchPool.withScratch { scratch in
                    searchFiltered(qp.baseAddress!, k: k, ef: efs, scratch: scratch,
                                   admission: LiveKeysPassing(index: self, predicate: predicate))
                }
            }
        }
        if let failure = corruption() { throw failure }
        return result
    }

    /// ``search(_:k:ef:)`` for many queries (row-major), on `threads`
    /// threads; with `allowedKeys`, what
    /// ``search(_:k:ef:allowedKeys:matchCount:)`` returns for each query.
    ///
    /// A filter the planner would scan exactly (see
    /// ``search(_:k:ef:allowedKeys:matchCount:)``) is answered for the whole
    /// batch at once: the matching vectors are gathered once and the queries
    /// multiplied by them with BLAS (an exact ``FlatIndex`` batch search).
    public func search(batch queries: [Float], k: Int, ef: Int? = nil, allowedKeys: Bitset? = nil,
                       matchCount: Int? = nil, threads: Int = Parallelism.defaultThreadCount)
        throws(LodestoneError) -> [[Neighbor]]
    {
        guard threads >= 1 else { throw .invalidArgument(name: "threads", reason: "must be at least 1, got \(threads)") }
        guard queries.count % dimension == 0 else {
            throw .dimensionMismatch(expected: dimension, actual: queries.count % dimension)
        }
        let nq = queries.count / dimension
        var prepared = [Float](repeating: 0, count: queries.count)
        var efs = 0
        for i in 0..<nq {
            let (q, e) = try prepareSearch(Array(queries[(i * dimension)..<((i + 1) * dimension)]), k: k, ef: ef)
            prepared.replaceSubrange((i * dimension)..<((i + 1) * dimension), with: q)
            efs = e
        }
        if let allowedKeys, nq >= FlatIndex.gemmMinimumQueries,
           planCosts(matches: matchCount ?? allowedKeys.count, k: k, ef: efs).exact {
            return try exactBatch(prepared, k: k, allowedKeys: allowedKeys, threads: threads)
        }
        let out = UnsafeMutableBufferPointer<[Neighbor]>.allocate(capacity: nq)
        out.initialize(repeating: [])
        defer { out.deinitialize().deallocate() }
        let next = Atomic<Int>(0)
        let d = dimension
        prepared.withUnsafeBufferPointer { qp in
            parallelRun(threads: min(threads, max(nq, 1))) { _ in
                scratchPool.withScratch { scratch in
                    while true {
                        let i = next.add(1, ordering: .relaxed).oldValue
                        if i >= nq { break }
                        let q = qp.baseAddress! + i * d
                        if let allowedKeys {
                            out[i] = searchPlanned(q, k: k, ef: efs, allowedKeys: allowedKeys, matchCount: matchCount).results
                        } else {
                            out[i] = searchPrepared(q, k: k, ef: efs, scratch: scratch)
                        }
                    }
                }
            }
        }
        if let failure = corruption() { throw failure }
        return Array(out)
    }

    func prepareSearch(_ query: [Float], k: Int, ef: Int?) throws(LodestoneError) -> ([Float], Int) {
        guard k >= 1 else { throw .invalidArgument(name: "k", reason: "must be at least 1, got \(k)") }
        let e = ef ?? parameters.efSearch
        guard e >= 1 else { throw .invalidArgument(name: "ef", reason: "must be at least 1, got \(e)") }
        guard count > 0 else { throw .emptyIndex }
        if let failure = corruption() { throw failure }
        let q = try VectorPreparation.prepared(query, dimension: dimension, metric: metric, kernels: kernels).vector
        return (q, max(e, k))
    }

    /// A search for a prepared query: greedy descent through the upper
    /// layers, then a beam of width `ef` on layer 0 (the quantized walk's
    /// when the index has neighbour codes).
    func searchPrepared(_ q: UnsafePointer<Float>, k: Int, ef: Int, scratch: SearchScratch) -> [Neighbor] {
        if let codes = neighbourCodes { return searchQuantized(q, codes: codes, k: k, ef: ef, scratch: scratch) }
        if let codes = compactCodes { return searchCompact(q, codes: codes, k: k, ef: ef, scratch: scratch) }
        guard let (start, startDistance) = descend(q, toLayer: 0, scratch: scratch) else { return [] }
        let found = searchLayer(q, entry: start, entryDistance: startDistance, ef: ef, layer: 0, scratch: scratch)
        let wanted = min(k, found)
        var out: [Neighbor] = []
        out.reserveCapacity(wanted)
        for i in 0..<found where out.count < wanted {
            let e = scratch.pool[i]
            // Removed nodes may still guide a search; they are never returned.
            if state(e.id) != .live { continue }
            out.append(Neighbor(key: key(e.id), score: metric.score(rankValue: e.distance)))
        }
        if out.count < wanted {
            // Removed nodes crowded the pool: search on until k live nodes.
            return searchFiltered(q, k: k, ef: ef, scratch: scratch, admission: LiveNodes(index: self))
        }
        return out
    }

    /// Greedy descent from the entry point down to `layer` (exclusive of
    /// layers below it): returns the closest node found and its rank value.
    func descend(_ q: UnsafePointer<Float>, toLayer target: Int, scratch: SearchScratch) -> (UInt32, Float)? {
        descendFromTop(q, toLayer: target, scratch: scratch).map { ($0.node, $0.distance) }
    }

    /// ``descend(_:toLayer:scratch:)``, also returning the top layer of the
    /// entry point it started from (read once: the entry may change meanwhile).
    func descendFromTop(_ q: UnsafePointer<Float>, toLayer target: Int, scratch: SearchScratch)
        -> (node: UInt32, distance: Float, top: Int)?
    {
        let e = entry.load(ordering: .acquiring)
        guard e != 0 else { return nil }
        var current = UInt32(truncatingIfNeeded: e)
        let top = Int(e >> 32) - 1
        var currentDistance = rank(q, vector(current))
        var layer = top
        while layer > target {
            var improved = true
            while improved {
                improved = false
                let n = gatherNeighbours(of: current, layer: layer, scratch: scratch, visited: nil)
                scratch.nodesExpanded += 1
                scratch.distancesComputed += n
                if n == 0 { break }
                kernels.rankValues(metric, q, rows: scratch.rows, count: n, dimension: dimension, into: scratch.values)
                for j in 0..<n where scratch.values[j] < currentDistance {
                    currentDistance = scratch.values[j]
                    current = scratch.ids[j]
                    improved = true
                }
            }
            layer -= 1
        }
        return (current, currentDistance, top)
    }

    /// Copies the neighbours of `id` on `layer` into the scratch buffers
    /// (ids and row pointers), skipping ids not yet visible and, when
    /// `visited` is given, ids already visited (marking the rest).
    @inline(__always)
    func gatherNeighbours(of id: UInt32, layer: Int, scratch: SearchScratch,
                          visited: (marks: UnsafeMutablePointer<UInt16>, generation: UInt16, bound: Int)?) -> Int {
        let slots = links(id, layer: layer)
        let capacity = linkCapacity(layer: layer)
        var n = 0
        for j in 0..<capacity {
            let nb = lodestone_load_u32(slots + j)
            if nb == HNSWIndex.noNode { break }
            if let v = visited {
                if Int(nb) >= v.bound || v.marks[Int(nb)] == v.generation { continue }
                v.marks[Int(nb)] = v.generation
            }
            scratch.ids[n] = nb
            scratch.rows[n] = UnsafePointer(vector(nb))
            n += 1
        }
        return n
    }

    /// Beam search on one layer from one entry node: leaves the up to `ef`
    /// nearest nodes found in `scratch.pool`, sorted best first, and returns
    /// how many there are. The pool is a sorted array; the search expands
    /// its best unexpanded entry until none is left (the pool's bound plays
    /// the role of HNSW's "furthest result").
    func searchLayer(_ q: UnsafePointer<Float>, entry start: UInt32, entryDistance: Float, ef: Int, layer: Int,
                     scratch: SearchScratch) -> Int {
        var none = NoCollector()
        return beamSearch(q, entry: start, entryDistance: entryDistance, ef: ef, layer: layer, scratch: scratch,
                          gatherer: AllNeighbours(), collector: &none, budget: .max)
    }

    /// ``searchLayer(_:entry:entryDistance:ef:layer:scratch:)`` with the
    /// nodes to score after each expansion chosen by `gatherer`, and every
    /// node scored shown to `collector`; returns -1 once more than `budget`
    /// distances have been computed (the caller then takes another plan).
    func beamSearch<G: NeighbourGatherer, C: NodeCollector>(
        _ q: UnsafePointer<Float>, entry start: UInt32, entryDistance: Float, ef: Int, layer: Int,
        scratch: SearchScratch, gatherer: G, collector: inout C, budget: Int
    ) -> Int {
        let bound = nodeCount.load(ordering: .acquiring)
        let generation = scratch.beginSearch(nodes: bound, poolSize: ef)
        let marks = scratch.visited
        let pool = scratch.pool
        marks[Int(start)] = generation
        pool[0] = PoolEntry(distance: entryDistance, id: start)
        collector.observe(start, entryDistance)
        var count = 1
        var cursor = 0
        let spentBefore = scratch.distancesComputed
        while cursor < count {
            let current = pool[cursor].id
            pool[cursor].tagged |= PoolEntry.expandedBit
            let n = gatherer.gather(self, of: current, layer: layer, scratch: scratch, marks: marks,
                                    generation: generation, bound: bound)
            scratch.nodesExpanded += 1
            scratch.distancesComputed += n
            if scratch.distancesComputed - spentBefore > budget { return -1 }
            var lowest = cursor + 1
            if n > 0 {
                kernels.rankValues(metric, q, rows: scratch.rows, count: n, dimension: dimension, into: scratch.values)
                for j in 0..<n {
                    let d = scratch.values[j]
                    collector.observe(scratch.ids[j], d)
                    if count == ef && d >= pool[count - 1].distance { continue }
                    let nb = scratch.ids[j]
                    let lo = PoolEntry.insert(PoolEntry(distance: d, id: nb), into: pool, count: &count, capacity: ef)
                    // It may be expanded soon: start fetching its links
                    // (measurements: docs/design/quantized-walk.md).
                    if layer == 0 { lodestone_prefetch(links0.record(nb)) }
                    if lo < lowest { lowest = lo }
                }
            }
            cursor = lowest
            while cursor < count && pool[cursor].isExpanded { cursor += 1 }
        }
        return count
    }

    /// Copies into `scratch.ids` and `rows` (from `source`) the nodes a
    /// filtered walk scores next from `id` (ACORN's predicate-aware
    /// expansion, on the ordinary graph): its neighbours that pass
    /// `admission`, then, looking through those that do not, their
    /// neighbours that pass, up to one neighbour list's worth. Only admitted
    /// nodes get a distance, so a selective filter does not make the walk
    /// score the whole index. When nothing within two hops passes, the
    /// neighbours that do not are returned instead, so the walk can cross a
    /// region the filter excludes.
    @inline(__always)
    func gatherAdmitted<A: NodeAdmission, R: NodeRows>(
        of id: UInt32, scratch: SearchScratch, rows: UnsafeMutablePointer<UnsafeRawPointer?>, source: R,
        marks: UnsafeMutablePointer<UInt16>, generation: UInt16, bound: Int, admission: A
    ) -> Int {
        let capacity = linkCapacity(layer: 0)
        let slots = links(id, layer: 0)
        var n = 0, passed = 0
        for j in 0..<capacity {
            let nb = lodestone_load_u32(slots + j)
            if nb == HNSWIndex.noNode { break }
            if Int(nb) >= bound || marks[Int(nb)] == generation { continue }
            marks[Int(nb)] = generation
            if admission.admits(nb) {
                scratch.ids[n] = nb
                rows[n] = source.row(nb)
                n += 1
            } else {
                scratch.transit[passed] = nb
                passed += 1
            }
        }
        // As many as the unfiltered walk would score here: the new
        // neighbours, those that pass and those replaced by two-hop ones.
        let limit = n + passed
        // The lists about to be read are scattered: ask for them all at
        // once, so their cache misses overlap.
        for t in 0..<min(passed, limit - n) { lodestone_prefetch(links0.record(scratch.transit[t])) }
        var i = 0
        while i < passed && n < limit {
            let second = links(scratch.transit[i], layer: 0)
            var j = 0
            while j < capacity && n < limit {
                let nb = lodestone_load_u32(second + j)
                if nb == HNSWIndex.noNode { break }
                j += 1
                if Int(nb) >= bound || marks[Int(nb)] == generation || !admission.admits(nb) { continue }
                marks[Int(nb)] = generation
                scratch.ids[n] = nb
                rows[n] = source.row(nb)
                n += 1
            }
            i += 1
        }
        scratch.nodesExpanded += i
        if n == 0 {
            for t in 0..<passed {
                scratch.ids[t] = scratch.transit[t]
                rows[t] = source.row(scratch.transit[t])
            }
            n = passed
        }
        return n
    }

    /// The filtered search (hnswlib's): an unbounded candidate min-heap and
    /// a bounded max-heap of admitted results; it stops when the nearest
    /// candidate is farther than the `ef`-th admitted result.
    func searchFiltered<A: NodeAdmission>(_ q: UnsafePointer<Float>, k: Int, ef: Int, scratch: SearchScratch,
                                          admission: A) -> [Neighbor] {
        guard let (start, startDistance) = descend(q, toLayer: 0, scratch: scratch) else { return [] }
        let bound = nodeCount.load(ordering: .acquiring)
        let generation = scratch.beginSearch(nodes: bound, poolSize: 1)
        let marks = scratch.visited
        scratch.reserveResults(ef)
        var results = TopKHeap(storage: scratch.results, capacity: ef)
        var heapCount = 0
        scratch.reserveHeap(64)

        func push(_ c: Candidate) {
            scratch.reserveHeap(heapCount + 1)
            let heap = scratch.heap
            var i = heapCount
            heapCount += 1
            while i > 0 {
                let parent = (i - 1) >> 1
                if !(c < heap[parent]) { break }
                heap[i] = heap[parent]
                i = parent
            }
            heap[i] = c
        }
        func pop() -> Candidate {
            let heap = scratch.heap
            let top = heap[0]
            heapCount -= 1
            let last = heap[heapCount]
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= heapCount { break }
                var c = l
                if l + 1 < heapCount && heap[l + 1] < heap[l] { c = l + 1 }
                if !(heap[c] < last) { break }
                heap[i] = heap[c]
                i = c
            }
            if heapCount > 0 { heap[i] = last }
            return top
        }

        marks[Int(start)] = generation
        push(Candidate(distance: startDistance, id: UInt64(start)))
        if admission.admits(start) { results.consider(Candidate(distance: startDistance, id: UInt64(start))) }
        while heapCount > 0 {
            let c = pop()
            if results.isFull && c.distance > results.threshold { break }
            let n = gatherNeighbours(of: UInt32(c.id), layer: 0, scratch: scratch, visited: (marks, generation, bound))
            scratch.nodesExpanded += 1
            scratch.distancesComputed += n
            if n == 0 { continue }
            kernels.rankValues(metric, q, rows: scratch.rows, count: n, dimension: dimension, into: scratch.values)
            for j in 0..<n {
                let d = scratch.values[j]
                if results.isFull && d >= results.threshold { continue }
                let id = scratch.ids[j]
                push(Candidate(distance: d, id: UInt64(id)))
                if admission.admits(id) { results.consider(Candidate(distance: d, id: UInt64(id))) }
            }
        }
        let best = results.drainSorted()
        return best.prefix(k).map { neighbor($0) }
    }
}

import Synchronization
