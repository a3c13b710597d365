/// Float32 vectors read from an `.fvecs` or `.npy` file a block of rows at a
/// time, so a file of any size is read in bounded memory (offline jobs:
/// `lodestone knn`). The layout is checked when opening (a size that is not
/// a whole number of rows, an absurd header); each block checks its rows'
/// dimension headers (`.fvecs`).
public final class VectorFileReader: @unchecked Sendable {
    // @unchecked: immutable after init; reads use pread on a descriptor
    // that lives as long as the reader.
    public let path: String
    /// Rows in the file.
    public let count: Int
    /// Components per row.
    public let dimension: Int
    private let fd: Int32
    private let dataStart: Int
    private let isVecs: Bool

    /// Opens `path` (`.npy` by extension, else TEXMEX `.fvecs`).
    /// - Throws: ``LodestoneError/malformedFile(path:reason:)`` or `.io`.
    public init(path: String) throws(LodestoneError) {
        self.path = path
        let (fd, size) = try POSIXFile.openForReading(path)
        self.fd = fd
        do throws(LodestoneError) {
            if path.hasSuffix(".npy") {
                let first = try POSIXFile.read(fd, count: min(size, 12), at: 0, path: path)
                var preamble = first
                if let n = VectorFiles.npyPreambleLength(first), n <= min(size, 1 << 20) {
                    preamble = try POSIXFile.read(fd, count: n, at: 0, path: path)
                }
                (dataStart, count, dimension) = try VectorFiles.npyLayout(preamble, fileSize: size, path: path, descr: "<f4")
                isVecs = false
            } else {
                guard size >= 4 else { throw .malformedFile(path: path, reason: "the file is \(size) bytes, shorter than one record header") }
                let head = try POSIXFile.read(fd, count: 4, at: 0, path: path)
                let d = Int(Int32(littleEndianBytes: head, at: 0))
                guard d > 0 && d <= VectorFiles.maximumDimension else {
                    throw .malformedFile(path: path, reason: "record 0 declares dimension \(d); expected 1...\(VectorFiles.maximumDimension) (is this a TEXMEX .fvecs file?)")
                }
                guard size % (4 + 4 * d) == 0 else {
                    throw .malformedFile(path: path, reason: "truncated: \(size) bytes is not a whole number of records of dimension \(d)")
                }
                (dataStart, count, dimension) = (0, size / (4 + 4 * d), d)
                isVecs = true
            }
        } catch {
            SystemCalls.close(fd)
            throw error
        }
    }

    deinit { SystemCalls.close(fd) }

    /// Rows `range` as one row-major array.
    /// - Throws: ``LodestoneError/malformedFile(path:reason:)`` for a record
    ///   whose dimension differs (`.fvecs`), or `.io`.
    public func rows(_ range: Range<Int>) throws(LodestoneError) -> [Float] {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "rows \(range) of \(count)")
        let d = dimension
        let rowBytes = isVecs ? 4 + 4 * d : 4 * d
        let raw = try POSIXFile.read(fd, count: range.count * rowBytes, at: dataStart + range.lowerBound * rowBytes,
                                     path: path)
        var out = [Float](repeating: 0, count: range.count * d)
        for r in 0..<range.count {
            var at = r * rowBytes
            if isVecs {
                let dr = Int(Int32(littleEndianBytes: raw, at: at))
                guard dr == d else {
                    throw .malformedFile(path: path, reason: "record \(range.lowerBound + r) declares dimension \(dr) but record 0 declared \(d)")
                }
                at += 4
            }
            for j in 0..<d { out[r * d + j] = Float(littleEndianBytes: raw, at: at + 4 * j) }
        }
        return out
    }
}
