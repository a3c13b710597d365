import Benchmark
import Lodestone

/// Distance-kernel throughput at d = 384 on a cache-resident block of rows,
/// for every instruction set this CPU runs (portable = the Swift SIMD path).
let benchmarks: @Sendable () -> Void = {
    let dimension = 384, rows = 64
    var rng = SystemRandomNumberGenerator()
    let block = (0..<(rows * dimension)).map { _ in Float.random(in: -1...1, using: &rng) }
    let query = (0..<dimension).map { _ in Float.random(in: -1...1, using: &rng) }
    let rowVectors = (0..<rows).map { Array(block[($0 * dimension)..<(($0 + 1) * dimension)]) }

    for isa in DistanceKernels.available {
        guard let kernels = DistanceKernels(isa: isa) else { continue }
        let config = Benchmark.Configuration(
            metrics: [.wallClock, .throughput, .mallocCountTotal],
            scalingFactor: .kilo,
            maxDuration: .seconds(1)
        )
        // One scaled iteration = one pass over the 64 rows (96 KiB).
        Benchmark("dotRows d=384 x64 [\(isa.rawValue)]", configuration: config) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(kernels.dotRows(query, block))
            }
        }
        Benchmark("dot d=384 x64 [\(isa.rawValue)]", configuration: config) { benchmark in
            for _ in benchmark.scaledIterations {
                var s: Float = 0
                for r in rowVectors { s += kernels.dot(query, r) }
                blackHole(s)
            }
        }
        Benchmark("l2Squared d=384 x64 [\(isa.rawValue)]", configuration: config) { benchmark in
            for _ in benchmark.scaledIterations {
                var s: Float = 0
                for r in rowVectors { s += kernels.l2Squared(query, r) }
                blackHole(s)
            }
        }
    }
}
