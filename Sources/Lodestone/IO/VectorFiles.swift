#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Readers and writers for the vector file formats benchmarks use:
///
/// - TEXMEX `.fvecs` / `.ivecs`: each record is a little-endian int32
///   dimension followed by that many float32 (`fvecs`) or int32 (`ivecs`)
///   values; every record has the same dimension.
/// - NumPy `.npy` (format 1.0-3.0): a C-order 2-D (or 1-D, read as one row)
///   array of little-endian float32 (`<f4`) or int32 (`<i4`).
///
/// Malformed input (a truncated record, a dimension that changes, an absurd
/// header) throws ``LodestoneError/malformedFile(path:reason:)``, naming the
/// file and the record or field at fault.
public enum VectorFiles {
    /// The largest dimension accepted from a file.
    public static let maximumDimension = 1 << 16

    /// Reads float32 vectors from `.fvecs` or `.npy` (chosen by extension).
    public static func readFloats(_ path: String) throws(LodestoneError) -> Matrix<Float> {
        let bytes = try readFile(path)
        if path.hasSuffix(".npy") { return try parseNPY(bytes, path: path, as: Float.self, descr: "<f4") }
        return try parseVecs(bytes, path: path, as: Float.self)
    }

    /// Reads int32 vectors (ground truth) from `.ivecs` or `.npy`.
    public static func readInts(_ path: String) throws(LodestoneError) -> Matrix<Int32> {
        let bytes = try readFile(path)
        if path.hasSuffix(".npy") { return try parseNPY(bytes, path: path, as: Int32.self, descr: "<i4") }
        return try parseVecs(bytes, path: path, as: Int32.self)
    }

    /// Writes float32 vectors as `.fvecs`.
    public static func writeFvecs(_ matrix: Matrix<Float>, to path: String) throws(LodestoneError) {
        try writeFile(path, encodeVecs(matrix))
    }

    /// Writes int32 vectors as `.ivecs`.
    public static func writeIvecs(_ matrix: Matrix<Int32>, to path: String) throws(LodestoneError) {
        try writeFile(path, encodeVecs(matrix))
    }

    // MARK: Parsing

    static func parseVecs<T: FixedWidthScalar>(_ bytes: [UInt8], path: String, as: T.Type) throws(LodestoneError) -> Matrix<T> {
        guard bytes.count >= 4 else {
            throw .malformedFile(path: path, reason: bytes.isEmpty ? "the file is empty" : "the file is \(bytes.count) bytes, shorter than one record header")
        }
        let d = Int(Int32(littleEndianBytes: bytes, at: 0))
        guard d > 0 && d <= maximumDimension else {
            throw .malformedFile(path: path, reason: "record 0 declares dimension \(d); expected 1...\(maximumDimension) (is this a TEXMEX .fvecs/.ivecs file?)")
        }
        let recordBytes = 4 + 4 * d
        guard bytes.count % recordBytes == 0 else {
            let whole = bytes.count / recordBytes
            throw .malformedFile(path: path, reason: "truncated: \(bytes.count) bytes is \(whole) whole records of dimension \(d) plus \(bytes.count - whole * recordBytes) stray bytes; record \(whole) is cut short")
        }
        let n = bytes.count / recordBytes
        var values = [T](repeating: T.zero, count: n * d)
        for r in 0..<n {
            let at = r * recordBytes
            let dr = Int(Int32(littleEndianBytes: bytes, at: at))
            guard dr == d else {
                throw .malformedFile(path: path, reason: "record \(r) declares dimension \(dr) but record 0 declared \(d)")
            }
            for j in 0..<d { values[r * d + j] = T(littleEndianBytes: bytes, at: at + 4 + 4 * j) }
        }
        return Matrix(rows: n, dimension: d, values: values)
    }

    static func parseNPY<T: FixedWidthScalar>(_ bytes: [UInt8], path: String, as: T.Type, descr expected: String) throws(LodestoneError) -> Matrix<T> {
        let (dataStart, rows, d) = try npyLayout(bytes, fileSize: bytes.count, path: path, descr: expected)
        var values = [T](repeating: T.zero, count: rows * d)
        for i in 0..<(rows * d) { values[i] = T(littleEndianBytes: bytes, at: dataStart + 4 * i) }
        return Matrix(rows: rows, dimension: d, values: values)
    }

    /// The length of an `.npy` file's preamble, from its first 12 bytes
    /// (nil if they are not an `.npy` preamble's start).
    static func npyPreambleLength(_ first: [UInt8]) -> Int? {
        guard first.count >= 12, Array(first[0..<6]) == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] else { return nil }
        switch first[6] {
        case 1: return 10 + (Int(first[8]) | Int(first[9]) << 8)
        case 2, 3: return 12 + Int(UInt32(littleEndianBytes: first, at: 8))
        default: return nil
        }
    }

    /// Where an `.npy` file's data starts and its shape, from its preamble
    /// (`bytes` holds at least the preamble; `fileSize` is the whole file's).
    static func npyLayout(_ bytes: [UInt8], fileSize: Int, path: String, descr expected: String)
        throws(LodestoneError) -> (dataStart: Int, rows: Int, dimension: Int)
    {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw .malformedFile(path: path, reason: "not a NumPy .npy file (missing the \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw .malformedFile(path: path, reason: "truncated .npy header") }
            headerLength = Int(UInt32(littleEndianBytes: bytes, at: 8))
            headerStart = 12
        default:
            throw .malformedFile(path: path, reason: ".npy format version \(major).\(bytes[7]) is not supported (1.0 to 3.0 are)")
        }
        guard headerLength <= 1 << 20, headerStart + headerLength <= bytes.count else {
            throw .malformedFile(path: path, reason: "truncated .npy header (declares \(headerLength) bytes)")
        }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard let descr = npyField(header, "descr") else {
            throw .malformedFile(path: path, reason: ".npy header has no 'descr' field")
        }
        let cleanDescr = descr.trimmingQuotes
        guard cleanDescr == expected || (expected.dropFirst() == cleanDescr.dropFirst() && cleanDescr.first == "=") else {
            throw .malformedFile(path: path, reason: ".npy holds dtype \(cleanDescr); expected \(expected)")
        }
        if let fortran = npyField(header, "fortran_order"), fortran.hasPrefix("True") {
            throw .malformedFile(path: path, reason: ".npy array is in Fortran order; save it C-contiguous (numpy.ascontiguousarray)")
        }
        guard let shapeText = npyField(header, "shape"), shapeText.hasPrefix("(") else {
            throw .malformedFile(path: path, reason: ".npy header has no 'shape' tuple")
        }
        let dims = shapeText.dropFirst().prefix { $0 != ")" }.split(separator: ",")
            .map { $0.filter { !$0.isWhitespace } }.filter { !$0.isEmpty }
        let shape = dims.compactMap { Int($0) }
        guard shape.count == dims.count, (1...2).contains(shape.count), shape.allSatisfy({ $0 >= 0 }) else {
            throw .malformedFile(path: path, reason: ".npy shape \(shapeText.prefix { $0 != ")" })) is not a 1-D or 2-D array")
        }
        let rows = shape.count == 2 ? shape[0] : 1
        let d = shape.count == 2 ? shape[1] : shape[0]
        guard d > 0 && d <= maximumDimension else {
            throw .malformedFile(path: path, reason: ".npy rows have \(d) components; expected 1...\(maximumDimension)")
        }
        let dataStart = headerStart + headerLength
        let (total, overflow) = rows.multipliedReportingOverflow(by: d * 4)
        guard !overflow, fileSize - dataStart == total else {
            throw .malformedFile(path: path, reason: "truncated or oversized .npy data: shape (\(rows), \(d)) needs \(total) bytes, found \(fileSize - dataStart)")
        }
        return (dataStart, rows, d)
    }

    private static func npyField(_ header: String, _ name: String) -> Substring? {
        let needle = Array("'\(name)':")
        let chars = Array(header)
        guard chars.count >= needle.count else { return nil }
        for i in 0...(chars.count - needle.count) where Array(chars[i..<(i + needle.count)]) == needle {
            return Substring(String(chars[(i + needle.count)...])).drop { $0 == " " }
        }
        return nil
    }

    static func encodeVecs<T: FixedWidthScalar>(_ m: Matrix<T>) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(m.rows * (4 + 4 * m.dimension))
        for r in 0..<m.rows {
            Int32(m.dimension).appendLittleEndian(to: &out)
            for j in 0..<m.dimension { m.values[r * m.dimension + j].appendLittleEndian(to: &out) }
        }
        return out
    }

    // MARK: Files

    /// The whole contents of the file at `path`.
    public static func readFile(_ path: String) throws(LodestoneError) -> [UInt8] {
        let (fd, size) = try POSIXFile.openForReading(path)
        defer { SystemCalls.close(fd) }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        var failure: Int32 = 0
        bytes.withUnsafeMutableBytes { buf in
            while done < size {
                let r = SystemCalls.read(fd, buf.baseAddress! + done, size - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if r == 0 { break }
                done += r
            }
        }
        if failure != 0 { throw .io(path: path, operation: "read", errno: failure) }
        return Array(bytes[0..<done])
    }

    /// Writes `bytes` to `path`, replacing any file there.
    public static func writeFile(_ path: String, _ bytes: [UInt8]) throws(LodestoneError) {
        let fd = SystemCalls.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        defer { SystemCalls.close(fd) }
        try withBytes(bytes) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in
            try POSIXFile.writeAll(fd, b, at: 0, path: path)
        }
    }
}

/// A 4-byte scalar read from and written to little-endian bytes.
protocol FixedWidthScalar: Sendable {
    static var zero: Self { get }
    init(littleEndianBytes bytes: [UInt8], at offset: Int)
    func appendLittleEndian(to out: inout [UInt8])
}

extension UInt32 {
    init(littleEndianBytes b: [UInt8], at i: Int) {
        self = UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
}

extension Int32: FixedWidthScalar {
    init(littleEndianBytes b: [UInt8], at i: Int) { self = Int32(bitPattern: UInt32(littleEndianBytes: b, at: i)) }
    func appendLittleEndian(to out: inout [UInt8]) {
        let u = UInt32(bitPattern: self)
        out.append(contentsOf: [UInt8(u & 0xFF), UInt8(u >> 8 & 0xFF), UInt8(u >> 16 & 0xFF), UInt8(u >> 24)])
    }
}

extension Float: FixedWidthScalar {
    init(littleEndianBytes b: [UInt8], at i: Int) { self = Float(bitPattern: UInt32(littleEndianBytes: b, at: i)) }
    func appendLittleEndian(to out: inout [UInt8]) { Int32(bitPattern: bitPattern).appendLittleEndian(to: &out) }
}

extension Substring {
    var trimmingQuotes: String {
        let s = self.prefix { $0 != "," && $0 != "}" }.filter { !$0.isWhitespace }
        return String(s.filter { $0 != "'" && $0 != "\"" })
    }
}
