/// An inverted index of records' metadata, by slot: equality postings for
/// every field and value (each element of a list field counts), presence
/// sets, and per numeric field a sorted (value, slot) array for ranges.
/// It evaluates a ``Filter`` to the exact set of matching slots without
/// looking at records one by one, which is what a query planner needs to
/// estimate selectivity and to drive an exact or a filtered search.
///
/// Not thread-safe: its owner serialises writers and evaluation.
public final class MetadataIndex {
    private var records: [Metadata?] = []
    private var live = Bitset(capacity: 0)
    private var postings: [String: [Filter.Scalar: Set<Int>]] = [:]
    private var present: [String: Set<Int>] = [:]
    private var numberValues: [String: [Int: Double]] = [:]
    /// Per numeric field, (value, slot) sorted by value: built on the first
    /// range query after a change to the field.
    private var sortedNumbers: [String: [(value: Double, slot: Int)]] = [:]

    /// An empty index.
    public init() {}

    /// Slots covered (one past the highest slot ever set).
    public var capacity: Int { records.count }

    /// Sets (or, with nil, clears) the metadata of `slot`.
    public func set(_ metadata: Metadata?, slot: Int) {
        if slot >= records.count {
            records += [Metadata?](repeating: nil, count: slot + 1 - records.count)
        }
        if slot >= live.capacity {
            // Geometric growth: appending slot after slot stays linear.
            var grown = Bitset(capacity: max(slot + 1, live.capacity * 2, 64))
            live.forEach { grown.insert($0) }
            live = grown
        }
        if let old = records[slot] { unindex(old, slot: slot) }
        records[slot] = metadata
        if let metadata {
            live.insert(slot)
            index(metadata, slot: slot)
        } else {
            live.remove(slot)
        }
    }

    /// The metadata of `slot`.
    public func metadata(slot: Int) -> Metadata? { slot < records.count ? records[slot] : nil }

    private func scalars(_ value: MetadataValue) -> [Filter.Scalar] {
        switch value {
        case let .string(s): return [.string(s)]
        case let .number(n): return [.number(n)]
        case let .bool(b): return [.bool(b)]
        case let .strings(list): return list.map { .string($0) }
        }
    }

    private func index(_ metadata: Metadata, slot: Int) {
        for (field, value) in metadata {
            present[field, default: []].insert(slot)
            for s in scalars(value) { postings[field, default: [:]][s, default: []].insert(slot) }
            if case let .number(n) = value {
                numberValues[field, default: [:]][slot] = n
                sortedNumbers[field] = nil
            }
        }
    }

    private func unindex(_ metadata: Metadata, slot: Int) {
        for (field, value) in metadata {
            present[field]?.remove(slot)
            for s in scalars(value) { postings[field]?[s]?.remove(slot) }
            if case .number = value {
                numberValues[field]?[slot] = nil
                sortedNumbers[field] = nil
            }
        }
    }

    private func bitset(_ slots: Set<Int>?) -> Bitset {
        var out = Bitset(capacity: records.count)
        for s in slots ?? [] { out.insert(s) }
        return out
    }

    private func equal(_ field: String, _ scalar: Filter.Scalar) -> Bitset { bitset(postings[field]?[scalar]) }

    private func range(_ field: String, _ include: (Double) -> Bool, lowerBound: Double?) -> Bitset {
        if sortedNumbers[field] == nil, let values = numberValues[field] {
            sortedNumbers[field] = values.map { (value: $0.value, slot: $0.key) }.sorted { $0.value < $1.value }
        }
        var out = Bitset(capacity: records.count)
        guard let list = sortedNumbers[field] else { return out }
        // Skip straight to the lower bound when there is one.
        var start = 0
        if let low = lowerBound {
            var lo = 0, hi = list.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if list[mid].value < low { lo = mid + 1 } else { hi = mid }
            }
            start = lo
        }
        for entry in list[start...] where include(entry.value) { out.insert(entry.slot) }
        return out
    }

    /// The slots whose metadata passes `filter`.
    public func evaluate(_ filter: Filter) -> Bitset {
        switch filter {
        case let .and(parts):
            return parts.reduce(live) { $0.intersection(evaluate($1)) }
        case let .or(parts):
            return parts.reduce(Bitset(capacity: records.count)) { $0.union(evaluate($1)) }
        case let .field(name, condition):
            switch condition {
            case let .eq(s): return equal(name, s)
            case let .ne(s): return live.subtracting(equal(name, s))
            case let .in(list): return list.reduce(Bitset(capacity: records.count)) { $0.union(equal(name, $1)) }
            case let .nin(list): return live.subtracting(list.reduce(Bitset(capacity: records.count)) { $0.union(equal(name, $1)) })
            case let .exists(flag): return flag ? bitset(present[name]) : live.subtracting(bitset(present[name]))
            case let .gt(x): return range(name, { $0 > x }, lowerBound: x)
            case let .gte(x): return range(name, { $0 >= x }, lowerBound: x)
            case let .lt(x): return range(name, { $0 < x }, lowerBound: nil)
            case let .lte(x): return range(name, { $0 <= x }, lowerBound: nil)
            }
        }
    }
}
