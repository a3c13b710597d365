/// An inverted index of records' metadata, by slot: per field, equality
/// postings for every value (each element of a list field counts), the set
/// of records that have the field, and a sorted (value, slot) array for
/// numeric ranges. It evaluates a ``Filter`` to the exact set of matching
/// slots without looking at records one by one, which is what a query
/// planner needs to estimate selectivity and to drive an exact or a
/// filtered search.
///
/// A field is indexed the first time a filter names it, from every record
/// (for an opened index, reading that one field of each record in place),
/// and kept up to date from then on; fields no filter uses cost nothing.
///
/// Not thread-safe: its owner serialises writers and evaluation.
public final class MetadataIndex {
    /// Records set through ``set(_:slot:)`` (overriding `source`).
    private var stored: [Metadata?] = []
    private var overridden: [Bool] = []
    /// The persisted records underneath, if any.
    private let source: MetadataSource?
    /// Slots holding a record.
    private var live: Bitset
    private var slotCount: Int

    private struct FieldIndex {
        var postings: [Filter.Scalar: Set<Int>] = [:]
        var present: Set<Int> = []
        var numbers: [Int: Double] = [:]
        /// (value, slot) sorted by value: built on the first range query after a change.
        var sorted: [(value: Double, slot: Int)]? = nil
    }
    private var fields: [String: FieldIndex] = [:]

    /// An empty index.
    public convenience init() { self.init(source: nil) }

    /// An index over the records of `source`, changed from then on by ``set(_:slot:)``.
    init(source: MetadataSource?) {
        self.source = source
        slotCount = source?.slotCount ?? 0
        live = Bitset(capacity: max(slotCount, 64))
        if let source {
            for s in 0..<slotCount where source.isInUse(s) { live.insert(s) }
        }
    }

    /// Slots covered (one past the highest slot ever set).
    public var capacity: Int { slotCount }

    /// Sets (or, with nil, clears) the metadata of `slot`.
    public func set(_ metadata: Metadata?, slot: Int) {
        let old = self.metadata(slot: slot)
        if slot >= stored.count {
            let grown = max(slot + 1, stored.count * 2, 64)
            stored += [Metadata?](repeating: nil, count: grown - stored.count)
            overridden += [Bool](repeating: false, count: grown - overridden.count)
        }
        slotCount = max(slotCount, slot + 1)
        if slot >= live.capacity {
            // Geometric growth: appending slot after slot stays linear.
            var grown = Bitset(capacity: max(slot + 1, live.capacity * 2, 64))
            live.forEach { grown.insert($0) }
            live = grown
        }
        stored[slot] = metadata
        overridden[slot] = true
        if metadata != nil { live.insert(slot) } else { live.remove(slot) }
        for name in fields.keys {
            let before = old?[name], after = metadata?[name]
            if before == after { continue }
            if let before { unindex(before, field: name, slot: slot) }
            if let after { index(after, field: name, slot: slot) }
        }
    }

    /// The metadata of `slot`.
    public func metadata(slot: Int) -> Metadata? {
        if slot < overridden.count && overridden[slot] { return stored[slot] }
        return source?.metadata(slot: slot)
    }

    private func value(slot: Int, field: String, bytes: [UInt8]) -> MetadataValue? {
        if slot < overridden.count && overridden[slot] { return stored[slot]?[field] }
        return source?.value(slot: slot, field: bytes)
    }

    private func scalars(_ value: MetadataValue) -> [Filter.Scalar] {
        switch value {
        case let .string(s): return [.string(s)]
        case let .number(n): return [.number(n)]
        case let .bool(b): return [.bool(b)]
        case let .strings(list): return list.map { .string($0) }
        }
    }

    private func index(_ value: MetadataValue, field: String, slot: Int) {
        fields[field]!.present.insert(slot)
        for s in scalars(value) { fields[field]!.postings[s, default: []].insert(slot) }
        if case let .number(n) = value {
            fields[field]!.numbers[slot] = n
            fields[field]!.sorted = nil
        }
    }

    private func unindex(_ value: MetadataValue, field: String, slot: Int) {
        fields[field]!.present.remove(slot)
        for s in scalars(value) { fields[field]!.postings[s]?.remove(slot) }
        if case .number = value {
            fields[field]!.numbers[slot] = nil
            fields[field]!.sorted = nil
        }
    }

    /// Indexes `name` from every record, the first time it is needed.
    private func ensureField(_ name: String) {
        guard fields[name] == nil else { return }
        fields[name] = FieldIndex()
        let bytes = Array(name.utf8)
        live.forEach { slot in
            if let v = value(slot: slot, field: name, bytes: bytes) { index(v, field: name, slot: slot) }
        }
    }

    private func bitset(_ slots: Set<Int>?) -> Bitset {
        var out = Bitset(capacity: slotCount)
        for s in slots ?? [] { out.insert(s) }
        return out
    }

    private func equal(_ field: String, _ scalar: Filter.Scalar) -> Bitset { bitset(fields[field]?.postings[scalar]) }

    private func range(_ field: String, _ include: (Double) -> Bool, lowerBound: Double?) -> Bitset {
        if fields[field]!.sorted == nil {
            fields[field]!.sorted = fields[field]!.numbers.map { (value: $0.value, slot: $0.key) }.sorted { $0.value < $1.value }
        }
        var out = Bitset(capacity: slotCount)
        let list = fields[field]!.sorted!
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
            return parts.reduce(Bitset(capacity: slotCount)) { $0.union(evaluate($1)) }
        case let .field(name, condition):
            ensureField(name)
            switch condition {
            case let .eq(s): return equal(name, s)
            case let .ne(s): return live.subtracting(equal(name, s))
            case let .in(list): return list.reduce(Bitset(capacity: slotCount)) { $0.union(equal(name, $1)) }
            case let .nin(list): return live.subtracting(list.reduce(Bitset(capacity: slotCount)) { $0.union(equal(name, $1)) })
            case let .exists(flag):
                return flag ? bitset(fields[name]?.present) : live.subtracting(bitset(fields[name]?.present))
            case let .gt(x): return range(name, { $0 > x }, lowerBound: x)
            case let .gte(x): return range(name, { $0 >= x }, lowerBound: x)
            case let .lt(x): return range(name, { $0 < x }, lowerBound: nil)
            case let .lte(x): return range(name, { $0 <= x }, lowerBound: nil)
            }
        }
    }
}
