import CLodestoneHDF5Reader
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// ann-benchmarks' HDF5 data files: `train` (base vectors), `test`
/// (queries), `neighbors` (each query's exact neighbours, best first) and
/// the root attribute `distance` (`angular` is cosine).
struct HDF5File {
    let path: String

    private func check(_ status: Int32, _ err: [CChar]) throws {
        if status != 0 {
            throw CLIError(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }

    func shape(_ dataset: String) throws -> (rows: Int, cols: Int) {
        var rows: Int64 = 0, cols: Int64 = 0
        var err = [CChar](repeating: 0, count: 512)
        try check(lodestone_h5_shape(path, dataset, &rows, &cols, &err, err.count), err)
        return (Int(rows), Int(cols))
    }

    /// A dataset converted to `T` by `read` (one of the reader's typed reads).
    private func matrix<T: Sendable>(
        _ dataset: String, zero: T,
        read: (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafeMutablePointer<T>?, UnsafeMutablePointer<CChar>?, Int) -> Int32
    ) throws -> Matrix<T> {
        let (rows, cols) = try shape(dataset)
        var values = [T](repeating: zero, count: rows * cols)
        var err = [CChar](repeating: 0, count: 512)
        try check(read(path, dataset, &values, &err, err.count), err)
        return Matrix(rows: rows, dimension: cols, values: values)
    }

    /// A dataset as float32 rows.
    func floats(_ dataset: String) throws -> Matrix<Float> {
        try matrix(dataset, zero: 0, read: lodestone_h5_read_float)
    }

    /// Rows `range` of a two-dimensional dataset, as float32, row-major.
    func floatRows(_ dataset: String, _ range: Range<Int>, dimension: Int) throws -> [Float] {
        var values = [Float](repeating: 0, count: range.count * dimension)
        var err = [CChar](repeating: 0, count: 512)
        try check(lodestone_h5_read_float_rows(path, dataset, Int64(range.lowerBound), Int64(range.count), &values,
                                               &err, err.count), err)
        return values
    }

    /// A dataset as int32 rows.
    func ints(_ dataset: String) throws -> Matrix<Int32> {
        try matrix(dataset, zero: 0, read: lodestone_h5_read_int32)
    }

    /// The metric its `distance` attribute names.
    func metric() throws -> Metric {
        var out = [CChar](repeating: 0, count: 256)
        var err = [CChar](repeating: 0, count: 512)
        try check(lodestone_h5_string_attribute(path, "distance", &out, out.count, &err, err.count), err)
        let name = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch name {
        case "angular", "cosine": return .cosine
        case "euclidean", "l2": return .euclidean
        case "dot", "ip", "dotproduct": return .dotProduct
        default: throw CLIError("\(path): distance \"\(name)\" is not one Lodestone indexes (angular, euclidean, dot)")
        }
    }
}
