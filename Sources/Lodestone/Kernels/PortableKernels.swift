/// The portable distance kernels, in plain Swift SIMD.
///
/// They are the fallback where no C variant applies and the reference the
/// tests hold the dispatched kernels to. Products are accumulated with
/// `acc += x * y`, never `addingProduct`: without FMA code generation (the
/// default x86-64 target) the latter becomes a library call per lane, many
/// times slower (measurements: docs/design/quantized-walk.md).
enum PortableKernels {
    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
        UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
    }

    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= d {
            s0 += load8(a, i) * load8(b, i)
            s1 += load8(a, i + 8) * load8(b, i + 8)
            i += 16
        }
        if i + 8 <= d {
            s0 += load8(a, i) * load8(b, i)
            i += 8
        }
        var s = (s0 + s1).sum()
        while i < d {
            s += a[i] * b[i]
            i += 1
        }
        return s
    }

    static func l2sq(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= d {
            let t0 = load8(a, i) - load8(b, i)
            let t1 = load8(a, i + 8) - load8(b, i + 8)
            s0 += t0 * t0
            s1 += t1 * t1
            i += 16
        }
        if i + 8 <= d {
            let t = load8(a, i) - load8(b, i)
            s0 += t * t
            i += 8
        }
        var s = (s0 + s1).sum()
        while i < d {
            let t = a[i] - b[i]
            s += t * t
            i += 1
        }
        return s
    }

    static func cosine(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Float {
        var sd = SIMD8<Float>(), sa = SIMD8<Float>(), sb = SIMD8<Float>()
        var i = 0
        while i + 8 <= d {
            let x = load8(a, i), y = load8(b, i)
            sd += x * y
            sa += x * x
            sb += y * y
            i += 8
        }
        var dd = sd.sum(), na = sa.sum(), nb = sb.sum()
        while i < d {
            dd += a[i] * b[i]
            na += a[i] * a[i]
            nb += b[i] * b[i]
            i += 1
        }
        if na <= 0 || nb <= 0 { return 1 }
        return 1 - Float(Double(dd) / (Double(na) * Double(nb)).squareRoot())
    }

    static func firstIndex(_ x: UnsafePointer<Float>, _ n: Int, atLeast t: Float) -> Int {
        var i = 0
        while i < n {
            if x[i] >= t { return i }
            i += 1
        }
        return n
    }
}
