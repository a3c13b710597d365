/// Little-endian encoding into a byte array.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    mutating func u16(_ v: UInt16) { for i in 0..<2 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
    mutating func pad(to length: Int) { if bytes.count < length { zeros(length - bytes.count) } }
    /// A string as its UTF-8 length (UInt32) and bytes: what
    /// `lengthPrefixedString()` reads back.
    mutating func lengthPrefixed(_ s: String) {
        let b = Array(s.utf8)
        u32(UInt32(b.count))
        raw(b)
    }
}

/// Bounds-checked little-endian decoding; reading past the end throws.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var position = 0
    let onShort: () -> LodestoneError

    init(_ bytes: [UInt8], onShort: @escaping () -> LodestoneError) {
        self.bytes = bytes
        self.onShort = onShort
    }

    private mutating func take(_ n: Int) throws(LodestoneError) -> ArraySlice<UInt8> {
        guard n >= 0, position + n <= bytes.count else { throw onShort() }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    mutating func u16() throws(LodestoneError) -> UInt16 {
        try take(2).reversed().reduce(0) { $0 << 8 | UInt16($1) }
    }
    mutating func u32() throws(LodestoneError) -> UInt32 {
        try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    /// Bytes not read yet.
    var remaining: Int { bytes.count - position }
    mutating func u64() throws(LodestoneError) -> UInt64 {
        try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    mutating func raw(_ n: Int) throws(LodestoneError) -> [UInt8] { Array(try take(n)) }
    mutating func skip(_ n: Int) throws(LodestoneError) { _ = try take(n) }
}

/// `withUnsafeBytes` that keeps the body's typed error (the standard one
/// rethrows as `any Error`).
func withBytes<T, R>(_ bytes: [T], _ body: (UnsafeRawBufferPointer) throws(LodestoneError) -> R) throws(LodestoneError) -> R {
    let result: Result<R, LodestoneError> = bytes.withUnsafeBytes { p in
        Result { () throws(LodestoneError) -> R in try body(p) }
    }
    return try result.get()
}
