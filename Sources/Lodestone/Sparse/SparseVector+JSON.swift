extension SparseVector {
    /// Reads Pinecone's JSON shape, `{"indices": [UInt32…], "values":
    /// [number…]}`, as records, exports and queries carry it, then checks
    /// it (``validated(field:)``).
    /// - Parameters:
    ///   - json: the object.
    ///   - field: how errors name it (say `vectors[3].sparseValues`).
    /// - Throws: ``LodestoneError/invalidArgument(name:reason:)`` naming
    ///   `field` and what is wrong.
    public init(json: JSONValue, field: String = "sparseValues") throws(LodestoneError) {
        guard case let .object(fields) = json else {
            throw .invalidArgument(name: field, reason: "must be an object with \"indices\" and \"values\"")
        }
        guard case let .array(indexItems)? = fields["indices"] else {
            throw .invalidArgument(name: field, reason: "\"indices\" must be an array of integers from 0 to 4294967295")
        }
        guard case let .array(valueItems)? = fields["values"] else {
            throw .invalidArgument(name: field, reason: "\"values\" must be an array of numbers")
        }
        var indices: [UInt32] = [], values: [Float] = []
        indices.reserveCapacity(indexItems.count)
        values.reserveCapacity(valueItems.count)
        for (i, item) in indexItems.enumerated() {
            guard case let .number(n) = item, n >= 0, n <= Double(UInt32.max), n.rounded() == n else {
                throw .invalidArgument(name: field, reason: "indices[\(i)] is not an integer from 0 to 4294967295")
            }
            indices.append(UInt32(n))
        }
        for (i, item) in valueItems.enumerated() {
            guard case let .number(n) = item else { throw .invalidArgument(name: field, reason: "values[\(i)] is not a number") }
            values.append(Float(n))
        }
        self = try SparseVector(indices: indices, values: values).validated(field: field)
    }
}

extension JSONWriter {
    /// A sparse vector in Pinecone's shape: `{"indices": […], "values": […]}`.
    @_spi(LodestoneTools) public mutating func sparse(_ v: SparseVector) {
        object { w in
            w.key("indices")
            w.array { w in for i in v.indices { w.int(Int(i)) } }
            w.key("values")
            w.floats(v.values)
        }
    }
}
