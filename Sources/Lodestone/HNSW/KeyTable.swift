/// Maps user keys to node ids with open addressing: each bucket holds a node
/// id + 1 (0 = empty), and the key itself is read from the index's key
/// records, so a bucket costs 4 bytes. Linear probing, backward-shift
/// deletion (no tombstones), at most 80% full.
///
/// Not thread-safe: the index touches it only under its writer lock.
struct KeyTable {
    private var buckets: [UInt32] = []
    private(set) var count = 0
    /// Bumped by every insert and remove: caches derived from the table
    /// (a filter's matching nodes) compare it to know they still hold.
    private(set) var version: UInt64 = 0

    /// Bytes held by the table.
    var allocatedBytes: Int { buckets.capacity * 4 }

    @inline(__always)
    private static func hash(_ key: UInt64) -> UInt64 {
        SplitMix64.mix(key &+ SplitMix64.gamma)
    }

    /// The bucket holding `key`, or nil.
    private func bucket(of key: UInt64, keyOf: (UInt32) -> UInt64) -> Int? {
        guard !buckets.isEmpty else { return nil }
        let mask = buckets.count - 1
        var i = Int(truncatingIfNeeded: KeyTable.hash(key)) & mask
        while true {
            let b = buckets[i]
            if b == 0 { return nil }
            if keyOf(b - 1) == key { return i }
            i = (i + 1) & mask
        }
    }

    /// The node stored under `key`, given a way to read each node's key.
    func node(forKey key: UInt64, keyOf: (UInt32) -> UInt64) -> UInt32? {
        bucket(of: key, keyOf: keyOf).map { buckets[$0] - 1 }
    }

    /// Records `node` under `key` (which must not be present).
    mutating func insert(key: UInt64, node: UInt32, keyOf: (UInt32) -> UInt64) {
        version &+= 1
        if (count + 1) * 5 > buckets.count * 4 { grow(keyOf: keyOf) }
        let mask = buckets.count - 1
        var i = Int(truncatingIfNeeded: KeyTable.hash(key)) & mask
        while buckets[i] != 0 { i = (i + 1) & mask }
        buckets[i] = node + 1
        count += 1
    }

    /// Removes `key`; returns its node, or nil if absent.
    @discardableResult
    mutating func remove(key: UInt64, keyOf: (UInt32) -> UInt64) -> UInt32? {
        guard let i = bucket(of: key, keyOf: keyOf) else { return nil }
        version &+= 1
        let mask = buckets.count - 1
        let removed = buckets[i] - 1
        // Backward shift: pull later entries of the probe run into the hole.
        var hole = i
        var j = (i + 1) & mask
        while buckets[j] != 0 {
            let home = Int(truncatingIfNeeded: KeyTable.hash(keyOf(buckets[j] - 1))) & mask
            // Move j into the hole if its home is not in (hole, j] cyclically.
            let inRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j)
            if !inRange {
                buckets[hole] = buckets[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        buckets[hole] = 0
        count -= 1
        return removed
    }

    private mutating func grow(keyOf: (UInt32) -> UInt64) {
        let old = buckets
        buckets = [UInt32](repeating: 0, count: max(16, old.count * 2))
        let mask = buckets.count - 1
        for b in old where b != 0 {
            var i = Int(truncatingIfNeeded: KeyTable.hash(keyOf(b - 1))) & mask
            while buckets[i] != 0 { i = (i + 1) & mask }
            buckets[i] = b
        }
    }
}
