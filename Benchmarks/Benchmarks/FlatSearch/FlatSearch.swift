import Benchmark
import Lodestone

/// Flat search on 20,000 generated 384-d unit vectors: one query at a time
/// (the streaming scan) and a batch of 256 queries (the BLAS path). The
/// malloc counts show what a query allocates (nothing per vector).
let benchmarks: @Sendable () -> Void = {
    let dimension = 384, count = 20_000
    var rng = SystemRandomNumberGenerator()
    let base = (0..<(count * dimension)).map { _ in Float.random(in: -1...1, using: &rng) }
    let queries = (0..<(256 * dimension)).map { _ in Float.random(in: -1...1, using: &rng) }
    let query = Array(queries[0..<dimension])
    var index = try! FlatIndex(dimension: dimension, metric: .cosine)
    try! index.add(contentsOf: base, keys: (0..<UInt64(count)).map { $0 })
    let frozen = index

    Benchmark("flat single query k=10 n=20k d=384",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(2))) {
        benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try frozen.search(query, k: 10))
        }
    }
    Benchmark("flat batch 256 queries k=10 n=20k d=384, 2 threads",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(3))) {
        benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try frozen.search(batch: queries, k: 10, threads: 2))
        }
    }
}
