import CLodestoneKernels

/// An instruction set a kernel table is written for.
public enum KernelISA: String, Sendable, CaseIterable {
    /// Plain Swift SIMD: runs everywhere; the reference implementation.
    case portable
    /// x86-64 AVX2 with FMA.
    case avx2
    /// x86-64 AVX-512F.
    case avx512
    /// AArch64 Advanced SIMD.
    case neon

    /// The set a C dispatch value names (0 portable, else a
    /// `lodestone_isa`), or nil for any other value (-1: none named).
    init?(cValue value: Int32) {
        switch value {
        case 0: self = .portable
        case Int32(LODESTONE_ISA_AVX2_FMA.rawValue): self = .avx2
        case Int32(LODESTONE_ISA_AVX512.rawValue): self = .avx512
        case Int32(LODESTONE_ISA_NEON.rawValue): self = .neon
        default: return nil
        }
    }
}

/// A set of Float32 distance kernels for one instruction set.
///
/// ``DistanceKernels/active`` is chosen once per process: the best variant the
/// CPU runs (on x86-64 AVX-512, then AVX2+FMA, except on AMD cores, where
/// AVX2 measured faster for memory-bound scans, see
/// docs/design/quantized-walk.md; NEON on AArch64), else the
/// portable Swift kernels. Setting the environment variable
/// `LODESTONE_KERNELS` to `portable`, `avx2`, `avx512` or `neon` before start-up
/// forces a variant (an unsupported one falls back to the automatic choice).
///
/// All kernels accept any dimension, including 0 and odd sizes.
public struct DistanceKernels: @unchecked Sendable {
    // @unchecked: the table holds C function pointers to pure functions.

    /// The instruction set these kernels run.
    public let isa: KernelISA
    @usableFromInline let table: lodestone_kernel_table

    /// The kernels every index in this process uses.
    public static let active: DistanceKernels = {
        if let isa = KernelISA(cValue: lodestone_forced_isa()), let kernels = DistanceKernels(isa: isa) {
            return kernels
        }
        let order: [KernelISA] = lodestone_cpu_prefers_avx2() == 1 ? [.avx2, .avx512, .neon] : [.avx512, .avx2, .neon]
        for isa in order {
            if let kernels = DistanceKernels(isa: isa) { return kernels }
        }
        return DistanceKernels.portable
    }()

    /// The portable Swift kernels.
    public static let portable = DistanceKernels(portableTable: ())

    /// The instruction set of the neighbour-code kernels the quantized walk
    /// (``HNSWParameters/Traversal/quantized``) uses in this process. They are
    /// chosen on their own, in C: AVX-512 (F and BW) where it runs, on AMD
    /// cores too (it measured faster there for the walk, unlike for flat
    /// scans: docs/design/quantized-walk.md), then AVX2+FMA; NEON on
    /// AArch64; else portable C.
    /// `LODESTONE_KERNELS` forces them as it forces the distance kernels.
    public static var neighbourCodeISA: KernelISA { KernelISA(cValue: lodestone_qg_active_isa()) ?? .portable }

    /// The instruction sets this CPU can run, best last.
    public static var available: [KernelISA] {
        KernelISA.allCases.filter { DistanceKernels(isa: $0) != nil }
    }

    /// The kernels for `isa`, or nil when this CPU or build lacks them.
    public init?(isa: KernelISA) {
        let cISA: lodestone_isa
        switch isa {
        case .portable:
            self = DistanceKernels.portable
            return
        case .avx2: cISA = LODESTONE_ISA_AVX2_FMA
        case .avx512: cISA = LODESTONE_ISA_AVX512
        case .neon: cISA = LODESTONE_ISA_NEON
        }
        var table = lodestone_kernel_table()
        guard lodestone_kernel_table_for(cISA, &table) == 1 else { return nil }
        self.isa = isa
        self.table = table
    }

    private init(portableTable: Void) {
        isa = .portable
        table = lodestone_kernel_table(
            l2sq: { a, b, d in PortableKernels.l2sq(a!, b!, d) },
            dot: { a, b, d in PortableKernels.dot(a!, b!, d) },
            cosine: { a, b, d in PortableKernels.cosine(a!, b!, d) },
            l2sq_rows: { q, base, stride, n, d, out in
                for r in 0..<n { out![r] = PortableKernels.l2sq(q!, base! + r * stride, d) }
            },
            dot_rows: { q, base, stride, n, d, out in
                for r in 0..<n { out![r] = PortableKernels.dot(q!, base! + r * stride, d) }
            },
            find_ge: { x, n, t in PortableKernels.firstIndex(x!, n, atLeast: t) },
            l2sq_gather: { q, rows, n, d, out in
                for i in 0..<n { out![i] = PortableKernels.l2sq(q!, rows![i]!, d) }
            },
            dot_gather: { q, rows, n, d, out in
                for i in 0..<n { out![i] = PortableKernels.dot(q!, rows![i]!, d) }
            }
        )
    }

    // MARK: Safe entry points

    /// The inner product of two vectors of equal length.
    @inlinable
    public func dot(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "vectors differ in length")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in dot(pa.baseAddress!, pb.baseAddress!, a.count) }
        }
    }

    /// The squared Euclidean distance between two vectors of equal length.
    @inlinable
    public func l2Squared(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "vectors differ in length")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in l2Squared(pa.baseAddress!, pb.baseAddress!, a.count) }
        }
    }

    /// The cosine distance, 1 - cosine similarity (1 when either is zero).
    @inlinable
    public func cosineDistance(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "vectors differ in length")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in table.cosine(pa.baseAddress!, pb.baseAddress!, a.count) }
        }
    }

    /// Inner products of `query` with each of `rows.count / query.count` rows
    /// stored one after another in `rows`.
    public func dotRows(_ query: [Float], _ rows: [Float]) -> [Float] {
        precondition(!query.isEmpty && rows.count % query.count == 0, "rows are not whole vectors")
        let n = rows.count / query.count
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            query.withUnsafeBufferPointer { q in
                rows.withUnsafeBufferPointer { r in
                    dotRows(q.baseAddress!, r.baseAddress!, stride: query.count, count: n,
                            dimension: query.count, into: out.baseAddress!)
                }
            }
            initialized = n
        }
    }

    // MARK: Pointer entry points, for the indexes' hot loops

    @inlinable func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Float {
        table.dot(a, b, d)
    }

    @inlinable func l2Squared(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Float {
        table.l2sq(a, b, d)
    }

    @inlinable func dotRows(_ q: UnsafePointer<Float>, _ base: UnsafePointer<Float>, stride: Int,
                            count: Int, dimension: Int, into out: UnsafeMutablePointer<Float>) {
        table.dot_rows(q, base, stride, count, dimension, out)
    }

    @inlinable func l2SquaredRows(_ q: UnsafePointer<Float>, _ base: UnsafePointer<Float>, stride: Int,
                                  count: Int, dimension: Int, into out: UnsafeMutablePointer<Float>) {
        table.l2sq_rows(q, base, stride, count, dimension, out)
    }

    /// Rank values of one query against rows given by pointers (a node's
    /// neighbours); prefetches rows ahead of the one it scores.
    @inlinable func rankValues(_ metric: Metric, _ q: UnsafePointer<Float>,
                               rows: UnsafePointer<UnsafePointer<Float>?>, count: Int, dimension: Int,
                               into out: UnsafeMutablePointer<Float>) {
        if metric == .euclidean {
            table.l2sq_gather(q, rows, count, dimension, out)
        } else {
            table.dot_gather(q, rows, count, dimension, out)
            for i in 0..<count { out[i] = -out[i] }
        }
    }

    /// The first index in `0..<count` whose value is at least `threshold`,
    /// or `count`.
    @inlinable func firstIndex(_ values: UnsafePointer<Float>, count: Int, atLeast threshold: Float) -> Int {
        table.find_ge(values, count, threshold)
    }

    /// The metric's rank value (smaller is better) for one pair: the squared
    /// L2 distance for euclidean, the negated inner product otherwise (cosine
    /// vectors are normalised before they reach a kernel).
    @inlinable func rankValue(_ metric: Metric, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                              _ d: Int) -> Float {
        metric == .euclidean ? table.l2sq(a, b, d) : -table.dot(a, b, d)
    }

    /// Rank values of one query against `count` rows (see `rankValue`).
    @inlinable func rankValues(_ metric: Metric, _ q: UnsafePointer<Float>, _ base: UnsafePointer<Float>,
                               stride: Int, count: Int, dimension: Int, into out: UnsafeMutablePointer<Float>) {
        if metric == .euclidean {
            table.l2sq_rows(q, base, stride, count, dimension, out)
        } else {
            table.dot_rows(q, base, stride, count, dimension, out)
            for i in 0..<count { out[i] = -out[i] }
        }
    }
}
