/// What the per-vector codes (``SignCodes``, ``CompactCodes``) share: the
/// center they are taken against, and encoding every node on threads.
enum CodeCenter {
    /// The mean of the vectors of nodes `0..<count` that `isLive` admits
    /// (zeros when none is).
    static func mean(count: Int, dimension: Int, vector: (UInt32) -> UnsafePointer<Float>,
                     isLive: (UInt32) -> Bool) -> [Float] {
        var sum = [Double](repeating: 0, count: dimension)
        var live = 0
        for id in 0..<UInt32(count) where isLive(id) {
            let v = vector(id)
            for i in 0..<dimension { sum[i] += Double(v[i]) }
            live += 1
        }
        return sum.map { Float($0 / Double(max(live, 1))) }
    }

    /// Calls `encode` for every node below `count` with `center`, in blocks
    /// of 4,096 nodes on up to `threads` threads.
    static func encodeAll(count: Int, center: [Float], threads: Int,
                          _ encode: (UInt32, UnsafePointer<Float>) -> Void) {
        let block = 4_096
        center.withUnsafeBufferPointer { c in
            parallelFor(count: count, threads: min(threads, max(1, count / block)), grain: block) { run in
                for id in run { encode(UInt32(id), c.baseAddress!) }
            }
        }
    }
}
