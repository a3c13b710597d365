/// A fixed-size set of slot numbers, one bit each.
public struct Bitset: Sendable, Hashable {
    private(set) var words: [UInt64]
    /// The number of slots it covers.
    public let capacity: Int

    /// An empty set over `capacity` slots.
    public init(capacity: Int) {
        self.capacity = capacity
        words = [UInt64](repeating: 0, count: (capacity + 63) / 64)
    }

    /// Whether `slot` is in the set.
    public func contains(_ slot: Int) -> Bool {
        slot < capacity && words[slot >> 6] & (1 << UInt64(slot & 63)) != 0
    }

    /// An empty set over `capacity` slots, then `slots` inserted (each
    /// below `capacity`).
    public init<S: Sequence>(capacity: Int, slots: S) where S.Element == Int {
        self.init(capacity: capacity)
        for s in slots { insert(s) }
    }

    /// Adds `slot` (below ``capacity``).
    public mutating func insert(_ slot: Int) { words[slot >> 6] |= 1 << UInt64(slot & 63) }
    /// Removes `slot` (below ``capacity``).
    public mutating func remove(_ slot: Int) { words[slot >> 6] &= ~(1 << UInt64(slot & 63)) }

    /// Calls `body` with every slot in the set, ascending.
    @inline(__always)
    public func forEach(_ body: (Int) throws -> Void) rethrows {
        for i in words.indices {
            var bits = words[i]
            while bits != 0 {
                try body(i &* 64 &+ bits.trailingZeroBitCount)
                bits &= bits &- 1
            }
        }
    }

    /// The number of slots in the set.
    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// The slots in the set, ascending.
    public var slots: [Int] {
        var out: [Int] = []
        for (i, w) in words.enumerated() where w != 0 {
            var bits = w
            while bits != 0 {
                out.append(i * 64 + bits.trailingZeroBitCount)
                bits &= bits - 1
            }
        }
        return out
    }

    /// Slots in either set (over this set's capacity).
    public func union(_ other: Bitset) -> Bitset {
        var out = self
        for i in 0..<min(out.words.count, other.words.count) { out.words[i] |= other.words[i] }
        return out
    }

    /// Slots in both sets.
    public func intersection(_ other: Bitset) -> Bitset {
        var out = self
        let shared = min(out.words.count, other.words.count)
        for i in 0..<shared { out.words[i] &= other.words[i] }
        for i in shared..<out.words.count { out.words[i] = 0 }
        return out
    }

    /// Slots in this set and not in `other`.
    public func subtracting(_ other: Bitset) -> Bitset {
        var out = self
        for i in 0..<min(out.words.count, other.words.count) { out.words[i] &= ~other.words[i] }
        return out
    }
}
