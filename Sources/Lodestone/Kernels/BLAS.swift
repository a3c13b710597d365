import CLodestoneBLAS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The engine's one door to OpenBLAS.
///
/// Lodestone runs its own threads over tiles and calls `sgemm` from each of
/// them, so it asks OpenBLAS for one thread per call (the first time a batch
/// search runs). This setting is process-wide: a program that also calls
/// OpenBLAS directly and wants it multi-threaded can call
/// ``setThreadCount(_:)`` afterwards, at the cost of oversubscribing the
/// cores during Lodestone's batch searches.
public enum BLAS {
    /// The CPU core type OpenBLAS selected (for example `Haswell`,
    /// `SkylakeX`, `Zen`). An old or generic core type is far slower.
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// OpenBLAS's current thread count.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// Sets OpenBLAS's thread count (process-wide).
    public static func setThreadCount(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

    private static let singleThreaded: Void = { openblas_set_num_threads(1) }()

    /// Called before Lodestone's own threads call `sgemm`.
    static func prepareForTiledCalls() { _ = singleThreaded }

    /// `c[m×n] = a[m×k] · b[n×k]ᵀ`, all row-major with the given leading
    /// dimensions (in floats).
    static func multiplyTransposed(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k),
                    1, a, blasint(lda), b, blasint(ldb), 0, c, blasint(ldc))
    }

    /// Measures this process's single-threaded `sgemm` rate on an `n×n×n`
    /// product of random matrices, in GFLOP/s (the best of `repetitions`).
    /// Benchmarks report it beside the batch search's GEMM stage.
    public static func measureSGEMM(size n: Int = 2048, repetitions: Int = 3) -> Double {
        prepareForTiledCalls()
        var a = [Float](repeating: 0, count: n * n), b = a, c = a
        var state: UInt64 = 0x9E3779B97F4A7C15
        for i in 0..<(n * n) {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            a[i] = Float(state >> 40) / Float(1 << 24) - 0.5
            b[i] = Float((state >> 16) & 0xFFFFFF) / Float(1 << 24) - 0.5
        }
        var best = Double.infinity
        for _ in 0..<max(1, repetitions) {
            let t0 = monotonicSeconds()
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        multiplyTransposed(m: n, n: n, k: n, a: pa.baseAddress!, lda: n, b: pb.baseAddress!, ldb: n,
                                           c: pc.baseAddress!, ldc: n)
                    }
                }
            }
            best = min(best, monotonicSeconds() - t0)
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}

/// Seconds on the monotonic clock.
@inline(__always)
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
