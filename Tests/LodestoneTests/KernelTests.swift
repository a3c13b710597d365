import CLodestoneKernels
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// Every kernel of every instruction set this CPU runs, against a Float64
/// reference, at every dimension from 1 to 1,024.
@Suite("Distance kernels")
struct KernelTests {
    static let isas = DistanceKernels.available

    /// Float32 sums of d products are off by at most about d·ε·Σ|aᵢbᵢ|.
    static func tolerance(_ d: Int, _ magnitude: Double) -> Double {
        Double(d + 4) * Double(Float.ulpOfOne) * magnitude + 1e-30
    }

    static func reference(_ a: [Float], _ b: [Float]) -> (dot: Double, l2: Double, cosine: Double, magnitude: Double, l2Magnitude: Double) {
        var dot = 0.0, l2 = 0.0, na = 0.0, nb = 0.0, mag = 0.0
        for i in 0..<a.count {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y
            l2 += (x - y) * (x - y)
            na += x * x
            nb += y * y
            mag += abs(x * y)
        }
        let cos = na > 0 && nb > 0 ? 1 - dot / (na * nb).squareRoot() : 1
        return (dot, l2, cos, mag, l2)
    }

    @Test("dispatch picks a supported kernel set, portable is always there", arguments: [()])
    func dispatch(_: Void) {
        #expect(Self.isas.contains(.portable))
        #expect(Self.isas.contains(DistanceKernels.active.isa))
        #if arch(x86_64)
        if lodestone_cpu_supports(LODESTONE_ISA_AVX2_FMA) == 1 {
            #expect(DistanceKernels.active.isa != .portable, "an AVX2 CPU must not fall back to portable kernels")
        }
        #endif
    }

    @Test("pair kernels match Float64 at dimensions 1...1024", arguments: isas)
    func pairKernels(isa: KernelISA) throws {
        let kernels = try #require(DistanceKernels(isa: isa))
        var rng = Fixtures.SeededGenerator(seed: 42)
        for d in 1...1024 {
            let a = (0..<d).map { _ in Float.random(in: -2...2, using: &rng) }
            let b = (0..<d).map { _ in Float.random(in: -2...2, using: &rng) }
            let ref = Self.reference(a, b)
            let dot = Double(kernels.dot(a, b))
            let l2 = Double(kernels.l2Squared(a, b))
            let cos = Double(kernels.cosineDistance(a, b))
            #expect(abs(dot - ref.dot) <= Self.tolerance(d, ref.magnitude), "dot d=\(d) \(isa)")
            #expect(abs(l2 - ref.l2) <= Self.tolerance(d, ref.l2Magnitude), "l2 d=\(d) \(isa)")
            #expect(abs(cos - ref.cosine) <= 1e-5, "cosine d=\(d) \(isa): \(cos) vs \(ref.cosine)")
        }
    }

    @Test("rows kernels equal the pair kernels bit for bit, odd strides and tails", arguments: isas)
    func rowsKernels(isa: KernelISA) throws {
        let kernels = try #require(DistanceKernels(isa: isa))
        for d in [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 384, 385, 1000] {
            let n = 13
            let stride = d + 5
            let rows = Fixtures.randomVectors(count: n, dimension: stride, seed: UInt64(d))
            let q = Fixtures.randomVectors(count: 1, dimension: d, seed: 7 + UInt64(d))
            var dots = [Float](repeating: 0, count: n), l2s = dots
            q.withUnsafeBufferPointer { qp in
                rows.withUnsafeBufferPointer { rp in
                    dots.withUnsafeMutableBufferPointer { out in
                        kernels.dotRows(qp.baseAddress!, rp.baseAddress!, stride: stride, count: n, dimension: d,
                                        into: out.baseAddress!)
                    }
                    l2s.withUnsafeMutableBufferPointer { out in
                        kernels.l2SquaredRows(qp.baseAddress!, rp.baseAddress!, stride: stride, count: n, dimension: d,
                                              into: out.baseAddress!)
                    }
                }
            }
            for r in 0..<n {
                let row = Array(rows[(r * stride)..<(r * stride + d)])
                #expect(dots[r].bitPattern == kernels.dot(q, row).bitPattern, "dot row \(r) d=\(d) \(isa)")
                #expect(l2s[r].bitPattern == kernels.l2Squared(q, row).bitPattern, "l2 row \(r) d=\(d) \(isa)")
            }
        }
    }

    @Test("kernels agree with Float64 on real embeddings", arguments: isas)
    func realVectors(isa: KernelISA) throws {
        let kernels = try #require(DistanceKernels(isa: isa))
        let data = Fixtures.sample
        for i in 0..<50 {
            let a = data.queries.row(i % data.queries.rows)
            let b = data.base.row(i * 37 % data.base.rows)
            let ref = Self.reference(a, b)
            #expect(abs(Double(kernels.dot(a, b)) - ref.dot) <= Self.tolerance(384, ref.magnitude))
            #expect(abs(Double(kernels.l2Squared(a, b)) - ref.l2) <= Self.tolerance(384, ref.l2))
            #expect(abs(Double(kernels.cosineDistance(a, b)) - ref.cosine) <= 1e-5)
        }
    }

    @Test("cosine distance of a zero vector is 1; dimension 0 is 0", arguments: isas)
    func degenerate(isa: KernelISA) throws {
        let kernels = try #require(DistanceKernels(isa: isa))
        #expect(kernels.cosineDistance([0, 0, 0], [1, 2, 3]) == 1)
        #expect(kernels.dot([], []) == 0)
        #expect(kernels.l2Squared([], []) == 0)
    }

    @Test("firstIndex(atLeast:) finds the first value at or above a threshold", arguments: isas)
    func findFirst(isa: KernelISA) throws {
        let kernels = try #require(DistanceKernels(isa: isa))
        var rng = Fixtures.SeededGenerator(seed: 3)
        for n in [0, 1, 5, 8, 15, 16, 31, 32, 33, 64, 100, 1000] {
            let values = (0..<n).map { _ in Float.random(in: 0...1, using: &rng) }
            for t: Float in [-1, 0.5, 0.9, 0.99, 2] {
                let expected = values.firstIndex { $0 >= t } ?? n
                let got = values.withUnsafeBufferPointer { kernels.firstIndex($0.baseAddress ?? UnsafePointer(bitPattern: 64)!, count: n, atLeast: t) }
                #expect(got == expected, "n=\(n) t=\(t) \(isa)")
            }
        }
    }
}
