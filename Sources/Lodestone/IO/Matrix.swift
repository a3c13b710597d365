/// A dense row-major matrix: `rows` vectors of `dimension` scalars each.
public struct Matrix<Scalar: Sendable>: Sendable {
    /// The number of rows (vectors).
    public let rows: Int
    /// The number of columns (components per vector).
    public let dimension: Int
    /// The values, row after row (`rows * dimension` of them).
    public var values: [Scalar]

    /// Creates a matrix from row-major values.
    public init(rows: Int, dimension: Int, values: [Scalar]) {
        precondition(rows >= 0 && dimension >= 0 && values.count == rows * dimension, "shape does not match values")
        self.rows = rows
        self.dimension = dimension
        self.values = values
    }

    /// Row `i` as a new array.
    public func row(_ i: Int) -> [Scalar] {
        Array(values[(i * dimension)..<((i + 1) * dimension)])
    }

    /// The first `count` rows.
    public func prefix(_ count: Int) -> Matrix {
        let c = min(count, rows)
        return Matrix(rows: c, dimension: dimension, values: Array(values[0..<(c * dimension)]))
    }
}
