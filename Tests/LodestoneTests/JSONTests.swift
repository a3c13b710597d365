import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("JSON: the one reader and writer")
struct JSONTests {
    @Test("the reader takes what JSONSerialization takes, and gives the same values")
    func readerAgreesWithFoundation() throws {
        let documents = [
            #"{"a": [1, -2.5, 1e-7, 3E+2, 0], "b": {"c": null, "d": true, "e": false}, "f": "x\"y\\z\/\n\u00e9\ud83d\ude00"}"#,
            "[]", "{}", "  [ 1 , 2 ]  ", #""plain""#, "-0.0", "12345678901234", #"[{"k": [[], {}]}]"#,
        ]
        for text in documents {
            let ours = try JSONValue.parse(bytes: Array(text.utf8))
            let theirs = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
            #expect(Self.same(ours, theirs), "\(text)")
        }
    }

    static func same(_ a: JSONValue, _ b: Any) -> Bool {
        switch a {
        case .null: return b is NSNull
        case let .bool(x): return (b as? Bool) == x
        case let .number(x): return (b as? NSNumber).map { $0.doubleValue == x } ?? false
        case let .string(x): return (b as? String) == x
        case let .array(items):
            guard let other = b as? [Any], other.count == items.count else { return false }
            return zip(items, other).allSatisfy { same($0, $1) }
        case let .object(fields):
            guard let other = b as? [String: Any], other.count == fields.count else { return false }
            return fields.allSatisfy { k, v in other[k].map { same(v, $0) } ?? false }
        }
    }

    @Test("malformed JSON is refused with what and where, for every kind of mistake")
    func readerRefusesMalformed() {
        let bad = ["", "{", "[1,", #"{"a" 1}"#, #"{"a": 1,}"#, "[1 2]", "01", "1.", ".5", "1e", "-", "+1", "tru",
                   "nul", #""unterminated"#, "\"tab\there\"", #""\x""#, #""\u12""#, #""\ud800""#, #""\udc00x""#,
                   "[1] [2]", "NaN", "Infinity", "1e999", "{1: 2}", String(repeating: "[", count: 100) +
                       String(repeating: "]", count: 100)]
        for text in bad {
            do {
                _ = try JSONValue.parse(bytes: Array(text.utf8))
                Issue.record("accepted \(text.prefix(40))")
            } catch {
                #expect(error.offset <= text.utf8.count && "\(error)".contains("at byte \(error.offset)"), "\(text.prefix(40))")
            }
        }
        // Bytes that are not UTF-8 inside a string.
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(bytes: [0x22, 0xFF, 0xFE, 0x22]) }
        // Where: the offset points at the mistake.
        do {
            _ = try JSONValue.parse(bytes: Array(#"{"a": [1, 2,, 3]}"#.utf8))
            Issue.record("accepted a double comma")
        } catch {
            #expect(error.offset == 12, "\(error)")
        }
    }

    @Test("the writer's output reads back to the same values (numbers round-trip, strings escaped)")
    func writerRoundTrips() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let floats = (0..<16).map { _ in Float.random(in: -1e6...1e6, using: &rng) * (Bool.random() ? 1e-9 : 1) }
            let text = String((0..<12).map { _ in Character(Unicode.Scalar(UInt8.random(in: 0...127, using: &rng))) }) + "é😀"
            let metadata: Metadata = ["s": .string(text), "n": .number(Double(floats[0])), "b": true, "l": ["a", text]]
            var w = JSONWriter()
            w.object { w in
                w.key("v"); w.floats(floats)
                w.key("m"); w.metadata(metadata)
                w.field(text, 42)
            }
            let back = try JSONValue.parse(bytes: w.bytes)
            #expect(back["v"]?.arrayValue?.map { Float($0.numberValue!) } == floats)
            #expect(try Metadata.from(json: back["m"]!) == metadata)
            #expect(back[text]?.integerValue == 42)
            #expect(try JSONValue.parse(bytes: Array(back.jsonText.utf8)) == back)
        }
    }

    @Test("numbers read to the same double as Swift's own parser, on the fast path and off it")
    func numbersMatchDoubleParsing() throws {
        var rng = SplitMix64(seed: 11)
        var texts = ["0", "-0", "-0.0", "1", "0.1", "0.000123", "1.50", "123456789012345678", "9007199254740993",
                     "12345678901234567890123", "10000000000000000000000", "1e22", "1e23", "-2.5e-22", "4.9e-324",
                     "1.7976931348623157e308", "0.1000000000000000055511151231257827", "1E+2", "3e0", "0e5",
                     "123.456e-5", "2.2250738585072014e-308", "1234567890123456789012e-22",
                     "0." + String(repeating: "0", count: 99_999) + "1e100005", "1e-100001",
                     "0e999999999999", "-0e-5"]
        for _ in 0..<5_000 {
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            if f.isFinite { texts.append(f.description) }
            let d = Double(bitPattern: rng.next())
            if d.isFinite { texts.append(d.description) }
            texts.append(String(Double(Int64(bitPattern: rng.next()) % 1_000_000_000) / 1e6))
        }
        for text in texts {
            let ours = try JSONValue.parse(bytes: Array(text.utf8)).numberValue
            let expected = Double(text)!
            #expect(ours?.bitPattern == expected.bitPattern, "\(text): \(String(describing: ours)) vs \(expected)")
        }
    }

    @Test("metadata text is the writer's, and parses back to the same metadata")
    func metadataText() throws {
        let m: Metadata = ["z": .string("q\"uote\u{1}"), "a": .number(0.1), "n": .number(-3), "t": true, "l": ["x", "é"]]
        #expect(m.jsonText == #"{"a":0.1,"l":["x","é"],"n":-3,"t":true,"z":"q\"uote\u0001"}"#)
        #expect(try Metadata.from(json: JSONValue.parse(m.jsonText)) == m)
        #expect(MetadataValue.number(1e300).jsonText == "1e+300")
        #expect(MetadataValue.number(-0.0).jsonText == "-0")
        #expect(try JSONValue.parse("-0").numberValue?.sign == .minus)
    }

    @Test("a filter that is not JSON names the byte")
    func filterTextErrors() {
        #expect {
            _ = try Filter(json: #"{"year": {"$gt": 2020,}}"#)
        } throws: { error in
            "\(error)".contains("not valid JSON") && "\(error)".contains("at byte 22")
        }
    }
}
