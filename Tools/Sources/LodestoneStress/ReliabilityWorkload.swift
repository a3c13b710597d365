import Foundation
@_spi(LodestoneTools) import Lodestone

/// The deterministic workload the kill-point tests run and check: two
/// indexes ("flat", exact, synchronous; "graph", HNSW with the quantized
/// traversal, so its neighbour-code blocks and their delta patches meet
/// every fault too, or with the compact traversal for seeds divisible by 3
/// (the hostile files' golden workload), group commit)
/// receiving the same upserts (most records with a sparse vector too, so
/// the log's sparse operations and the segments' sparse sections meet every
/// fault), metadata and sparse-vector updates, deletes by id and by
/// filter, persists, an export and an import into a third index. Step `i` is a pure function of the seed, so
/// the checker rebuilds the state after any number of acknowledged steps.
enum ReliabilityWorkload {
    static let dimension = 8
    static let steps = 30
    static let indexes = ["flat", "graph"]
    static let exportStep = 12
    static let importStep = 22

    enum Step {
        case upsert([Record])
        case update(id: String, metadata: Metadata)
        case updateSparse(id: String, sparse: SparseVector)
        case delete(ids: [String])
        case deleteFilter(Filter)
        case persist
        case export
        case importExport
    }

    /// A pseudo-random vector in [-2, 2)^d (SplitMix64 of the position):
    /// no exact distance ties, so the exact order is unambiguous.
    static func vector(_ seed: Int, _ i: Int, _ j: Int) -> [Float] {
        (0..<dimension).map { d in
            let z = SplitMix64.mix(UInt64(truncatingIfNeeded: seed &* 1_000_003 &+ i &* 10_007 &+ j &* 101 &+ d)
                                   &+ SplitMix64.gamma)
            return Float(z >> 40) / Float(1 << 24) * 4 - 2
        }
    }

    /// A pseudo-random sparse vector of 1-4 components, or none for one
    /// record in four.
    static func sparse(_ seed: Int, _ i: Int, _ j: Int) -> SparseVector? {
        guard j % 4 != 3 else { return nil }
        let z = SplitMix64.mix(UInt64(truncatingIfNeeded: seed &* 7_919 &+ i &* 613 &+ j &* 31) &+ SplitMix64.gamma)
        let terms = Set((0..<(1 + Int(z % 4))).map { UInt32((z >> (8 + 8 * UInt64($0))) % 50) }).sorted()
        return SparseVector(indices: terms, values: terms.map { Float($0 % 7 + 1) / 8 })
    }

    static func step(seed: Int, _ i: Int) -> Step {
        if i == exportStep { return .export }
        if i == importStep { return .importExport }
        if i % 10 == 4 { return .persist }
        if i % 7 == 5 { return .deleteFilter(.field("g", .eq(.number(Double(i % 5))))) }
        if i % 5 == 3 { return .delete(ids: (0..<3).map { "r\((seed * 7 + i * 5 + $0 * 17) % 60)" }) }
        if i % 6 == 1 { return .update(id: "r\((seed + i * 3) % 60)", metadata: ["note": .string("step \(i)")]) }
        if i % 8 == 2 { return .updateSparse(id: "r\((seed * 5 + i * 7) % 60)", sparse: sparse(seed, i, 0)!) }
        return .upsert((0..<8).map { j in
            let k = (seed * 31 + i * 8 + j * 13) % 60
            return Record(id: "r\(k)", values: vector(seed, i, j),
                          metadata: ["g": .number(Double(k % 5)), "step": .number(Double(i))], sparseValues: sparse(seed, i, j))
        })
    }

    /// One index's records: id → (values, metadata, sparse vector).
    typealias State = [String: (values: [Float], metadata: Metadata, sparse: SparseVector?)]

    /// The state of "flat"/"graph" after `count` steps.
    static func model(seed: Int, steps count: Int) -> State {
        var s: State = [:]
        for i in 0..<count {
            switch step(seed: seed, i) {
            case let .upsert(records):
                for r in records { s[r.id] = (r.values, r.metadata ?? [:], r.sparseValues) }
            case let .update(id, metadata):
                if var r = s[id] {
                    for (k, v) in metadata { r.metadata[k] = v }
                    s[id] = r
                }
            case let .updateSparse(id, sparse):
                s[id]?.sparse = sparse
            case let .delete(ids):
                for id in ids { s[id] = nil }
            case let .deleteFilter(filter):
                s = s.filter { !filter.matches($0.value.metadata) }
            case .persist, .export, .importExport:
                break
            }
        }
        return s
    }

    /// What the workload does when a step throws.
    enum OnError {
        /// Rethrow (the kill-point child never sees an error).
        case stop
        /// Report the error, check that the open indexes hold the model before
        /// or after the step (nothing half-applied in memory), then retry the
        /// step once, as a caller would; a second failure is rethrown.
        case retryOnce(report: Report)
        /// Report and check as above, then give the step up and go on with
        /// the next (the model no longer applies; the caller compares what
        /// the indexes held at the end with what reopening finds).
        case skip(report: Report)

        typealias Report = (_ step: Int, _ error: any Error, _ inconsistency: String?) -> Void
    }

    /// Runs steps `0..<steps` in `directory`, calling `acknowledge(i)` (by
    /// default: printing `ack i`) after each. Returns the records each of
    /// ``indexes`` holds at the end, as its readers see them.
    @discardableResult
    static func run(directory: String, seed: Int, onError: OnError = .stop,
                    acknowledge: (Int) -> Void = { FileHandle.standardOutput.write(Data("ack \($0)\n".utf8)) })
        throws -> [State]
    {
        /// Runs `body`; on an error, acts as `onError` says. Returns nil when
        /// the step was given up.
        func attempt<T>(_ step: Int, _ handles: [Index], _ body: () throws -> T) throws -> T? {
            do {
                return try body()
            } catch {
                let report: OnError.Report
                switch onError {
                case .stop: throw error
                case let .retryOnce(r), let .skip(r): report = r
                }
                var inconsistency: String? = nil
                if case .retryOnce = onError {
                    // (Skipping, earlier skips leave the model behind: only the
                    // end state is compared.)
                    let before = model(seed: seed, steps: max(step, 0)), after = model(seed: seed, steps: step + 1)
                    for (name, h) in zip(indexes, handles) {
                        guard let got = try? records(of: h) else { inconsistency = "\(name): unreadable after the error"; break }
                        if !same(got, before) && !same(got, after) {
                            inconsistency = "\(name): \(got.count) records in memory match neither the model before the step "
                                + "(\(before.count)) nor after it (\(after.count))"
                            break
                        }
                    }
                }
                report(step, error, inconsistency)
                if case .skip = onError, step >= 0 { return nil }
                return try body()
            }
        }
        let db = try attempt(-1, []) { try Database(path: directory) }!
        let handles = try attempt(-1, []) {
            try indexes.map { name in
                db.listIndexes().contains(name) ? try db.index(name) : try db.createIndex(
                    name: name, dimension: dimension, metric: .euclidean,
                    // The graph commits in groups, so both log paths (a sync
                    // per record, a shared flush after it) meet every fault.
                    options: IndexOptions(kind: name == "flat" ? .flat : .hnsw,
                                          hnsw: HNSWParameters(m: 8, efConstruction: 64,
                                                               traversal: seed % 3 == 0 ? .compact : .quantized),
                                          durability: name == "flat" ? .synchronous : .groupCommit))
            }
        }!
        for i in 0..<steps {
            _ = try attempt(i, handles) {
                switch step(seed: seed, i) {
                case let .upsert(records): for h in handles { try h.upsert(records) }
                case let .update(id, metadata):
                    for h in handles {
                        do { try h.update(id: id, setMetadata: metadata) } catch LodestoneError.recordNotFound {}
                    }
                case let .updateSparse(id, sparse):
                    for h in handles {
                        do { try h.update(id: id, sparseValues: sparse) } catch LodestoneError.recordNotFound {}
                    }
                case let .delete(ids): for h in handles { try h.delete(ids: ids) }
                case let .deleteFilter(filter): for h in handles { try h.delete(filter: filter) }
                case .persist: for h in handles { try h.persist() }
                case .export: try handles[0].export(to: directory + "/export.jsonl.gz")
                case .importExport: _ = try db.importRecords(from: directory + "/export.jsonl.gz", into: "imported",
                                                             metric: .euclidean, options: IndexOptions(kind: .flat))
                }
            }
            acknowledge(i)
        }
        return try handles.map(records(of:))
    }

    // MARK: Checking

    /// Reads every record of an index.
    static func records(of index: Index) throws -> State {
        var ids: [String] = [], token: String? = nil
        repeat {
            let page = try index.listIDs(limit: 1_000, paginationToken: token)
            ids += page.ids
            token = page.nextToken
        } while token != nil
        var out: State = [:]
        for (id, r) in try index.fetch(ids: ids) { out[id] = (r.values, r.metadata ?? [:], r.sparseValues) }
        return out
    }

    static func same(_ a: State, _ b: State) -> Bool {
        a.count == b.count && a.allSatisfy { (id, r) in
            guard let o = b[id] else { return false }
            return o.values == r.values && o.metadata == r.metadata && o.sparse == r.sparse
        }
    }

    /// Exact top-k ids by squared L2 in Float64 (ties to the smaller id).
    static func exact(_ q: [Float], _ state: State, k: Int) -> [String] {
        var scored: [(id: String, distance: Double)] = []
        for (id, r) in state {
            var d = 0.0
            for j in 0..<q.count {
                let t = Double(q[j]) - Double(r.values[j])
                d += t * t
            }
            scored.append((id, d))
        }
        scored.sort { $0.distance < $1.distance || ($0.distance == $1.distance && $0.id < $1.id) }
        return scored.prefix(k).map(\.id)
    }

    /// Checks a directory after the workload was killed with `acked` steps
    /// acknowledged: returns nil when every invariant holds, else what broke.
    static func check(directory: String, seed: Int, acked: Int) -> String? {
        do {
            var first: [String: State] = [:]
            for pass in 0..<2 {
                let db = try Database(path: directory)
                let present = Set(db.listIndexes())
                for name in indexes where present.contains(name) || acked > 0 {
                    guard present.contains(name) else { return "index \(name) missing after \(acked) acks" }
                    let index = try db.index(name)
                    let got = try records(of: index)
                    let before = model(seed: seed, steps: acked), after = model(seed: seed, steps: min(acked + 1, steps))
                    guard same(got, before) || same(got, after) else {
                        return "\(name): \(got.count) records match neither the model after \(acked) steps "
                            + "(\(before.count)) nor after \(acked + 1) (\(after.count))"
                    }
                    if pass == 1, let f = first[name], !same(f, got) { return "\(name): a second reopen differs" }
                    first[name] = got
                    if !got.isEmpty {
                        var hits = 0, wanted = 0
                        for qi in 0..<5 {
                            let q = vector(seed + 1_000, qi, 0)
                            let truth = exact(q, got, k: 5)
                            let answer = try index.query(vector: q, topK: 5).matches.map(\.id)
                            if name == "flat" && answer != truth { return "flat: query \(qi) gives \(answer), exact \(truth)" }
                            hits += Set(answer).intersection(truth).count
                            wanted += truth.count
                        }
                        if Double(hits) < 0.95 * Double(wanted) { return "\(name): recall \(hits)/\(wanted)" }
                    }
                }
                let exported = model(seed: seed, steps: exportStep)
                if present.contains("imported") {
                    let got = try records(of: try db.index("imported"))
                    guard same(got, exported) || (got.isEmpty && acked <= importStep) else {
                        return "imported: \(got.count) records, expected \(exported.count)"
                    }
                } else if acked > importStep {
                    return "imported index missing after \(acked) acks"
                }
                let exportPath = directory + "/export.jsonl.gz"
                if FileManager.default.fileExists(atPath: exportPath) {
                    let scratch = directory + "/check-\(pass)"
                    let copy = try Database(path: scratch)
                    _ = try copy.importRecords(from: exportPath, into: "e", metric: .euclidean, options: IndexOptions(kind: .flat))
                    let got = try records(of: try copy.index("e"))
                    try copy.deleteIndex("e")
                    try? FileManager.default.removeItem(atPath: scratch)
                    guard same(got, exported) else { return "export file holds \(got.count) records, expected \(exported.count)" }
                } else if acked > exportStep {
                    return "export file missing after \(acked) acks"
                }
            }
            // Indexes that exist must hold no temporary files once opened (a
            // directory without a manifest is a create that never finished:
            // no index, and the next create of that name clears it).
            for name in try Database(path: directory).listIndexes() {
                let dir = directory + "/" + name
                let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.contains(".tmp") }
                if !leftovers.isEmpty { return "\(name): temporary files left after reopening: \(leftovers)" }
            }
            return nil
        } catch {
            return "reopening failed: \(error)"
        }
    }
}
