// The one JSON writer: server responses, exports, metadata text and the
// CLI's checkpoints are written through it, straight into bytes, with floats
// in their shortest round-tripping form (an export read back stores the same
// bits).

/// Writes JSON into a byte array: objects and arrays through closures,
/// commas placed for the caller.
@_spi(LodestoneTools) public struct JSONWriter {
    @_spi(LodestoneTools) public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    @_spi(LodestoneTools) public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    /// Ends a line of JSON Lines: the next value starts a new document.
    @_spi(LodestoneTools) public mutating func endLine() {
        bytes.append(UInt8(ascii: "\n"))
        needsComma = false
    }

    /// Empties the buffer (its capacity kept) once its bytes are written out.
    @_spi(LodestoneTools) public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        needsComma = false
    }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        needsComma = true
    }

    /// `{ ... }`, as a value (in an array, or after ``key(_:)``).
    @_spi(LodestoneTools) public mutating func object(_ body: (inout JSONWriter) -> Void) {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// `[ ... ]`, as a value.
    @_spi(LodestoneTools) public mutating func array(_ body: (inout JSONWriter) -> Void) {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
        body(&self)
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// A field name; the next value written is its value.
    @_spi(LodestoneTools) public mutating func key(_ name: String) {
        separate()
        quoted(name)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    /// Raw JSON text written as a value (the caller vouches for it).
    @_spi(LodestoneTools) public mutating func raw(_ text: String) { separate(); bytes.append(contentsOf: text.utf8) }
    @_spi(LodestoneTools) public mutating func string(_ s: String) { separate(); quoted(s) }
    @_spi(LodestoneTools) public mutating func int(_ v: Int) { separate(); bytes.append(contentsOf: String(v).utf8) }
    @_spi(LodestoneTools) public mutating func bool(_ v: Bool) { separate(); bytes.append(contentsOf: (v ? "true" : "false").utf8) }
    @_spi(LodestoneTools) public mutating func null() { separate(); bytes.append(contentsOf: "null".utf8) }

    /// A finite number in its shortest round-trip form (never NaN or
    /// infinity, which JSON has no spelling for: those become 0).
    @_spi(LodestoneTools) public mutating func number(_ v: Double) {
        separate()
        guard v.isFinite else { bytes.append(UInt8(ascii: "0")); return }
        if v == 0, v.sign == .minus {
            bytes.append(contentsOf: "-0".utf8)  // reads back as -0.0
        } else if v == v.rounded(), abs(v) < 1e15 {
            bytes.append(contentsOf: String(Int64(v)).utf8)
        } else {
            bytes.append(contentsOf: v.description.utf8)
        }
    }

    /// A float in its shortest form that reads back to the same float.
    @_spi(LodestoneTools) public mutating func number(_ v: Float) {
        separate()
        guard v.isFinite else { bytes.append(UInt8(ascii: "0")); return }
        bytes.append(contentsOf: v.description.utf8)
    }

    @_spi(LodestoneTools) public mutating func floats(_ values: [Float]) {
        array { w in for v in values { w.number(v) } }
    }

    @_spi(LodestoneTools) public mutating func strings(_ values: [String]) {
        array { w in for v in values { w.string(v) } }
    }

    @_spi(LodestoneTools) public mutating func field(_ name: String, _ value: String) { key(name); string(value) }
    @_spi(LodestoneTools) public mutating func field(_ name: String, _ value: Int) { key(name); int(value) }
    @_spi(LodestoneTools) public mutating func field(_ name: String, _ value: Bool) { key(name); bool(value) }

    /// Metadata as an object, fields sorted by name (the shape Pinecone
    /// returns and exports hold).
    @_spi(LodestoneTools) public mutating func metadata(_ m: Metadata) {
        object { w in
            for name in m.keys.sorted() {
                w.key(name)
                w.metadataValue(m[name]!)
            }
        }
    }

    /// One metadata value.
    @_spi(LodestoneTools) public mutating func metadataValue(_ value: MetadataValue) {
        switch value {
        case let .string(s): string(s)
        case let .number(n): number(n)
        case let .bool(b): bool(b)
        case let .strings(list): strings(list)
        }
    }

    /// Any parsed value (object fields sorted by name).
    @_spi(LodestoneTools) public mutating func json(_ value: JSONValue) {
        switch value {
        case .null: null()
        case let .bool(b): bool(b)
        case let .number(n): number(n)
        case let .string(s): string(s)
        case let .array(items): array { w in for item in items { w.json(item) } }
        case let .object(fields):
            object { w in for name in fields.keys.sorted() { w.key(name); w.json(fields[name]!) } }
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    private mutating func quoted(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          Self.hex[Int(c >> 4)], Self.hex[Int(c & 15)]])
            default: bytes.append(c)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
