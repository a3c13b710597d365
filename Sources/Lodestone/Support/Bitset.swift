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

    mutating func insert(_ slot: Int) { words[slot >> 6] |= 1 << UInt64(slot & 63) }
    mutating func remove(_ slot: Int) { words[slot >> 6] &= ~(1 << UInt64(slot & 63)) }

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

    func union(_ other: Bitset) -> Bitset {
        var out = self
        for i in out.words.indices { out.words[i] |= other.words[i] }
        return out
    }

    func intersection(_ other: Bitset) -> Bitset {
        var out = self
        for i in out.words.indices { out.words[i] &= other.words[i] }
        return out
    }

    func subtracting(_ other: Bitset) -> Bitset {
        var out = self
        for i in out.words.indices { out.words[i] &= ~other.words[i] }
        return out
    }
}
