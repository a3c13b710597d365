/// A sparse query's terms in a small hash table with no collisions, so a
/// record's dot product with it is one lookup per component, with no
/// branch: a merge of the two sorted lists mispredicts at every step.
struct QueryTermTable {
    /// Per bucket, its term and weight (term 0 with weight 0 when empty, so
    /// a miss adds nothing).
    private var keys: [UInt32]
    private var weights: [Float]
    private let multiplier: UInt32
    private let shift: UInt32

    /// Odd multipliers tried for each table size, in order.
    private static let multipliers: [UInt32] = [0x9E37_79B1, 0x85EB_CA6B, 0xC2B2_AE35, 0x27D4_EB2F,
                                                0x1656_67B1, 0xD3A2_646D, 0xFD70_46C5, 0xB55A_4F09]

    init(_ query: SparseVector) {
        var bits = 2
        while 1 << bits < 2 * max(query.indices.count, 1) { bits += 1 }
        while true {
            for m in Self.multipliers {
                if let table = Self.build(query, bits: bits, multiplier: m) {
                    self = table
                    return
                }
            }
            bits += 1
        }
    }

    private init(keys: [UInt32], weights: [Float], multiplier: UInt32, shift: UInt32) {
        self.keys = keys
        self.weights = weights
        self.multiplier = multiplier
        self.shift = shift
    }

    private static func build(_ query: SparseVector, bits: Int, multiplier: UInt32) -> QueryTermTable? {
        let shift = UInt32(32 - bits)
        var keys = [UInt32](repeating: 0, count: 1 << bits)
        var weights = [Float](repeating: 0, count: 1 << bits)
        // A term weighing 0 adds nothing: left out, so a bucket is taken
        // when its weight is not 0.
        for (t, w) in zip(query.indices, query.values) where w != 0 {
            let h = Int((t &* multiplier) &>> shift)
            if weights[h] != 0 { return nil }
            keys[h] = t
            weights[h] = w
        }
        return QueryTermTable(keys: keys, weights: weights, multiplier: multiplier, shift: shift)
    }

    /// Runs `body` with a function giving a record's dot product with the
    /// query from its components.
    @inline(__always)
    func withDot<R>(_ body: ((UnsafeBufferPointer<SparseEntry>) -> Float) -> R) -> R {
        keys.withUnsafeBufferPointer { k in
            weights.withUnsafeBufferPointer { w in
                let k = k.baseAddress!, w = w.baseAddress!, m = multiplier, shift = shift
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
