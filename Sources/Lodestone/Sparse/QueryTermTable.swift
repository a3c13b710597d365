/// A sparse query's terms in a small hash table, so a record's dot product
/// with it is one lookup per component: a merge of the two sorted lists
/// mispredicts at every step.
///
/// Most queries get a table with no collision (a multiplier and a size
/// tried until every term has its own bucket), looked up with no branch.
/// Term ids spread over 32 bits (hashed tokens) need about n² buckets for
/// that, so a query whose terms would need more than 8 per term probes
/// linearly instead.
struct QueryTermTable {
    /// Per bucket, its term and weight (term 0 with weight 0 when empty, so
    /// a miss adds nothing; a term weighing 0 is left out, as it adds
    /// nothing either).
    private var keys: [UInt32]
    private var weights: [Float]
    private let multiplier: UInt32
    private let shift: UInt32
    /// Whether terms may share a bucket's run (linear probing).
    private let probing: Bool

    /// Odd multipliers tried for each table size, in order.
    private static let multipliers: [UInt32] = [0x9E37_79B1, 0x85EB_CA6B, 0xC2B2_AE35, 0x27D4_EB2F,
                                                0x1656_67B1, 0xD3A2_646D, 0xFD70_46C5, 0xB55A_4F09]

    /// Buckets in the table.
    var bucketCount: Int { keys.count }

    init(_ query: SparseVector) {
        let terms = max(query.values.count(where: { $0 != 0 }), 1)
        var bits = 2
        while 1 << bits < 2 * terms { bits += 1 }
        while 1 << bits <= 8 * terms {
            for m in Self.multipliers {
                if let table = Self.build(query, bits: bits, multiplier: m, probing: false) {
                    self = table
                    return
                }
            }
            bits += 1
        }
        self = Self.build(query, bits: bits, multiplier: Self.multipliers[0], probing: true)!
    }

    private init(keys: [UInt32], weights: [Float], multiplier: UInt32, shift: UInt32, probing: Bool) {
        self.keys = keys
        self.weights = weights
        self.multiplier = multiplier
        self.shift = shift
        self.probing = probing
    }

    /// The table of `query` with `1 << bits` buckets, or nil when two
    /// terms meet in one bucket and `probing` is off.
    private static func build(_ query: SparseVector, bits: Int, multiplier: UInt32, probing: Bool) -> QueryTermTable? {
        let shift = UInt32(32 - bits), mask = (1 << bits) - 1
        var keys = [UInt32](repeating: 0, count: 1 << bits)
        var weights = [Float](repeating: 0, count: 1 << bits)
        for (t, w) in zip(query.indices, query.values) where w != 0 {
            var h = Int((t &* multiplier) &>> shift)
            while weights[h] != 0 {
                guard probing else { return nil }
                h = (h + 1) & mask
            }
            keys[h] = t
            weights[h] = w
        }
        return QueryTermTable(keys: keys, weights: weights, multiplier: multiplier, shift: shift, probing: probing)
    }

    /// Runs `body` with a function giving a record's dot product with the
    /// query from its components.
    @inline(__always)
    func withDot<R>(_ body: ((UnsafeBufferPointer<SparseEntry>) -> Float) -> R) -> R {
        keys.withUnsafeBufferPointer { k in
            weights.withUnsafeBufferPointer { w in
                let k = k.baseAddress!, w = w.baseAddress!, m = multiplier, shift = shift
                if probing {
                    let mask = self.keys.count - 1
                    return body { c in
                        var sum: Float = 0
                        for e in c {
                            var h = Int((e.key &* m) &>> shift)
                            while w[h] != 0 {
                                if k[h] == e.key {
                                    sum += w[h] * e.value
                                    break
                                }
                                h = (h + 1) & mask
                            }
                        }
                        return sum
                    }
                }
                return body { c in
                    var sum: Float = 0
                    for e in c {
                        let h = Int((e.key &* m) &>> shift)
                        sum += (k[h] == e.key ? w[h] : 0) * e.value
                    }
                    return sum
                }
            }
        }
    }
}
