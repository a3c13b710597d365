import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Metadata filters")
struct FilterTests {
    static let record: Metadata = [
        "genre": .string("drama"), "year": .number(2019), "popular": .bool(true), "tags": .strings(["a", "b"]),
    ]

    static func check(_ json: String, _ expected: Bool, _ metadata: Metadata = record,
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let filter = try Filter(json: json)
        #expect(filter.matches(metadata) == expected, "\(json)", sourceLocation: sourceLocation)
    }

    @Test("every operator on every value type")
    func operators() throws {
        try Self.check(#"{"genre": "drama"}"#, true)
        try Self.check(#"{"genre": {"$eq": "comedy"}}"#, false)
        try Self.check(#"{"year": 2019}"#, true)
        try Self.check(#"{"popular": true}"#, true)
        try Self.check(#"{"popular": {"$ne": true}}"#, false)
        try Self.check(#"{"tags": "b"}"#, true)                      // $eq on a list: any element
        try Self.check(#"{"tags": {"$ne": "b"}}"#, false)
        try Self.check(#"{"tags": {"$ne": "z"}}"#, true)
        try Self.check(#"{"year": {"$gt": 2018, "$lt": 2020}}"#, true)
        try Self.check(#"{"year": {"$gte": 2019, "$lte": 2019}}"#, true)
        try Self.check(#"{"year": {"$gt": 2019}}"#, false)
        try Self.check(#"{"genre": {"$gt": 1}}"#, false)               // ranges compare numbers only
        try Self.check(#"{"genre": {"$in": ["comedy", "drama"]}}"#, true)
        try Self.check(#"{"tags": {"$in": ["x", "a"]}}"#, true)
        try Self.check(#"{"year": {"$nin": [2018, 2020]}}"#, true)
        try Self.check(#"{"tags": {"$nin": ["a"]}}"#, false)
        try Self.check(#"{"missing": {"$ne": 1}}"#, true)              // missing fields pass $ne and $nin
        try Self.check(#"{"missing": {"$nin": [1]}}"#, true)
        try Self.check(#"{"missing": {"$in": [1]}}"#, false)
        try Self.check(#"{"missing": {"$exists": false}}"#, true)
        try Self.check(#"{"genre": {"$exists": true}}"#, true)
        try Self.check(#"{"year": "2019"}"#, false)                   // types do not coerce
        try Self.check(#"{"$or": [{"genre": "comedy"}, {"year": {"$lt": 2000}}]}"#, false)
        try Self.check(#"{"$or": [{"genre": "comedy"}, {"popular": true}]}"#, true)
        try Self.check(#"{"$and": [{"genre": "drama"}, {"$or": [{"tags": "z"}, {"year": 2019}]}]}"#, true)
        try Self.check(#"{"genre": "drama", "year": 2020}"#, false)   // implicit $and
        try Self.check(#"{}"#, true)
        #expect(Filter.field("year", .gte(2000)).matches(Self.record))
    }

    static func parseError(_ json: String) -> LodestoneError? {
        do {
            _ = try Filter(json: json)
            return nil
        } catch {
            return error
        }
    }

    @Test("malformed filters name the place and the problem")
    func errors() throws {
        let cases: [(String, String, String)] = [
            (#"{"year": {"$in": 2019}}"#, "year", "$in expects an array"),
            (#"{"year": {"$foo": 1}}"#, "year", "unknown operator $foo"),
            (#"{"$nor": []}"#, "$nor", "unknown operator $nor"),
            (#"{"$and": {"a": 1}}"#, "$and", "expects a non-empty array"),
            (#"{"$or": []}"#, "$or", "expects a non-empty array"),
            (#"{"year": {"$gt": "x"}}"#, "year", "$gt expects a number"),
            (#"{"year": {"$exists": 1}}"#, "year", "$exists expects true or false"),
            (#"{"year": null}"#, "year", "$eq expects a string, a number or a boolean"),
            (#"{"year": {}}"#, "year", "at least one operator"),
            (#"{"$and": [{"a": 1}, 5]}"#, "$and[1]", "must be a JSON object"),
            (#"[1, 2]"#, "", "must be a JSON object"),
            (#"{"year": "#, "", "not valid JSON"),
        ]
        for (json, path, reason) in cases {
            guard case let .invalidFilter(p, r)? = Self.parseError(json) else {
                Issue.record("\(json): no invalidFilter error")
                continue
            }
            #expect(p == path && r.contains(reason), "\(json): got \(p): \(r)")
        }
        var deep = #"{"a": 1}"#
        for _ in 0..<20 { deep = #"{"$and": ["# + deep + "]}" }
        #expect(throws: LodestoneError.self) { try Filter(json: deep) }
        let long = "{\"a\": {\"$in\": [" + (0...Filter.maximumListLength).map(String.init).joined(separator: ",") + "]}}"
        #expect(throws: LodestoneError.self) { try Filter(json: long) }
        #expect(LodestoneError.invalidFilter(path: "year", reason: "$in expects an array").description
                == #"invalid filter at "year": $in expects an array"#)
    }

    @Test("metadata from JSON: nulls dropped, other types refused")
    func metadata() throws {
        let m = try Metadata.from(json: JSONValue.parse(#"{"a": "x", "b": 2, "c": false, "d": ["p", "q"], "e": null}"#))
        #expect(m == ["a": .string("x"), "b": .number(2), "c": .bool(false), "d": .strings(["p", "q"])])
        #expect(throws: LodestoneError.invalidMetadata(field: "o", reason: "values must be strings, numbers, booleans or lists of strings")) {
            _ = try Metadata.from(json: JSONValue.parse(#"{"o": {"x": 1}}"#))
        }
    }

    @Test("the pypi-minilm filters match exactly the documented number of base records")
    func realFilters() throws {
        guard let dir = Fixtures.sharedData else {
            // Without ../shared the committed sample still exercises parsing.
            for line in try String(contentsOf: Fixtures.sampleData.appendingPathComponent("base_meta.jsonl"), encoding: .utf8)
                .split(separator: "\n").prefix(100) {
                _ = try Metadata.from(json: JSONValue.parse(String(line)))
            }
            return
        }
        let lines = try String(contentsOf: dir.appendingPathComponent("base_meta.jsonl"), encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try Metadata.from(json: JSONValue.parse(String($0))) }
        #expect(records.count == 100_000)
        for name in ["recent", "popular", "y2019_long"] {
            let file = try JSONValue.parse(String(contentsOf: dir.appendingPathComponent("filter_\(name).json"), encoding: .utf8))
            guard case let .object(fields) = file, let filterJSON = fields["filter"], case let .number(expected)? = fields["matches"] else {
                Issue.record("filter_\(name).json has no filter/matches")
                continue
            }
            let filter = try Filter(json: filterJSON)
            #expect(records.filter { filter.matches($0) }.count == Int(expected), "filter \(name)")
        }
    }
}

extension FilterTests {
    /// A random record over a few fields with small value sets, so that
    /// filters hit, miss, and meet missing fields and lists often.
    static func randomRecord(_ rng: inout Fixtures.SeededGenerator) -> Metadata {
        var m: Metadata = [:]
        if Bool.random(using: &rng) { m["genre"] = .string(["drama", "comedy", "news"].randomElement(using: &rng)!) }
        if Int.random(in: 0..<4, using: &rng) > 0 { m["year"] = .number(Double(Int.random(in: 2015...2025, using: &rng))) }
        if Bool.random(using: &rng) { m["popular"] = .bool(Bool.random(using: &rng)) }
        if Bool.random(using: &rng) {
            m["tags"] = .strings((0..<Int.random(in: 0...3, using: &rng)).map { _ in ["a", "b", "c", "d"].randomElement(using: &rng)! })
        }
        if Int.random(in: 0..<5, using: &rng) == 0 { m["genre"] = .number(1) }  // a field with mixed types
        return m
    }

    static func randomScalar(_ rng: inout Fixtures.SeededGenerator) -> Filter.Scalar {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: return .string(["drama", "comedy", "news", "a", "b", "zzz"].randomElement(using: &rng)!)
        case 1: return .number(Double(Int.random(in: 2014...2026, using: &rng)))
        case 2: return .bool(Bool.random(using: &rng))
        default: return .number(1)
        }
    }

    static func randomFilter(_ rng: inout Fixtures.SeededGenerator, depth: Int = 0) -> Filter {
        let fields = ["genre", "year", "popular", "tags", "missing"]
        if depth < 3 && Int.random(in: 0..<3, using: &rng) == 0 {
            let parts = (0..<Int.random(in: 1...3, using: &rng)).map { _ in randomFilter(&rng, depth: depth + 1) }
            return Bool.random(using: &rng) ? .and(parts) : .or(parts)
        }
        let field = fields.randomElement(using: &rng)!
        let x = Double(Int.random(in: 2014...2026, using: &rng))
        let list = (0..<Int.random(in: 0...3, using: &rng)).map { _ in randomScalar(&rng) }
        let conditions: [Filter.Condition] = [
            .eq(randomScalar(&rng)), .ne(randomScalar(&rng)), .gt(x), .gte(x), .lt(x), .lte(x),
            .in(list), .nin(list), .exists(Bool.random(using: &rng)),
        ]
        return .field(field, conditions.randomElement(using: &rng)!)
    }

    @Test("the metadata index agrees with the record-by-record evaluator on random records and filters")
    func indexAgreesWithBruteForce() {
        var rng = Fixtures.SeededGenerator(seed: 99)
        let index = MetadataIndex()
        var records: [Metadata?] = []
        for slot in 0..<600 {
            let r: Metadata? = Int.random(in: 0..<10, using: &rng) == 0 ? nil : Self.randomRecord(&rng)
            records.append(r)
            index.set(r, slot: slot)
        }
        // Updates and removals after the first evaluation (sorted ranges rebuilt).
        _ = index.evaluate(.field("year", .gt(2020)))
        for _ in 0..<150 {
            let slot = Int.random(in: 0..<600, using: &rng)
            let r: Metadata? = Bool.random(using: &rng) ? Self.randomRecord(&rng) : nil
            records[slot] = r
            index.set(r, slot: slot)
        }
        for _ in 0..<500 {
            let filter = Self.randomFilter(&rng)
            let expected = records.indices.filter { records[$0].map { filter.matches($0) } ?? false }
            #expect(index.evaluate(filter).slots == expected, "\(filter)")
        }
    }
    @Test("the metadata index at the edges: range bounds, signed zero, wrong types, list fields, late fields, growth")
    func indexEdges() {
        let index = MetadataIndex()
        let records: [Metadata?] = [
            ["n": .number(-0.0), "s": "a", "l": ["x", "y"]],          // 0
            ["n": .number(0), "s": "b", "l": ["y"]],                   // 1
            ["n": .number(2.5), "s": .number(2.5), "b": true],         // 2: "s" holds a number here
            ["n": .string("2.5"), "l": ["z"]],                         // 3: "n" holds a string here
            nil,                                                       // 4: no record
            ["n": .number(-1e300), "b": false],                        // 5
            [:],                                                       // 6: a record without metadata fields
        ]
        for (slot, r) in records.enumerated() { index.set(r, slot: slot) }
        func slots(_ f: Filter) -> [Int] { index.evaluate(f).slots }
        func expected(_ f: Filter) -> [Int] { records.indices.filter { records[$0].map { f.matches($0) } ?? false } }
        let filters: [Filter] = [
            .field("n", .eq(.number(0))), .field("n", .gte(0)), .field("n", .gt(0)), .field("n", .lte(0)),
            .field("n", .lt(0)), .field("n", .gte(2.5)), .field("n", .lt(-1e300)), .field("n", .lte(-1e300)),
            .field("n", .eq(.string("2.5"))), .field("s", .gt(1)), .field("s", .eq(.number(2.5))),
            .field("l", .eq(.string("y"))), .field("l", .ne(.string("y"))), .field("l", .in([.string("z"), .string("x")])),
            .field("l", .nin([.string("y")])), .field("b", .eq(.bool(false))), .field("b", .ne(.bool(true))),
            .field("missing", .exists(false)), .field("n", .exists(true)),
            .and([]), .or([]), .and([.field("n", .gte(0)), .field("l", .exists(true))]),
        ]
        for f in filters { #expect(slots(f) == expected(f), "\(f)") }
        // Spot checks of the reference itself.
        #expect(slots(.field("n", .eq(.number(0)))) == [0, 1])
        #expect(slots(.field("l", .ne(.string("y")))) == [2, 3, 5, 6])
        #expect(slots(.field("missing", .exists(false))) == [0, 1, 2, 3, 5, 6])

        // A slot far past the bitsets' first capacity, set after fields were
        // indexed, and a field first named after many changes.
        var all = records
        all += [Metadata?](repeating: nil, count: 1_000 - all.count)
        all[999] = ["n": .number(0), "late": "yes"]
        all[1] = ["n": .number(7)]
        all[0] = nil
        for slot in [999, 1, 0] { index.set(all[slot], slot: slot) }
        func expectedAll(_ f: Filter) -> [Int] { all.indices.filter { all[$0].map { f.matches($0) } ?? false } }
        for f in filters + [.field("late", .eq(.string("yes"))), .field("late", .exists(false)), .field("n", .gt(5))] {
            #expect(slots(f) == expectedAll(f), "after changes: \(f)")
        }
        #expect(index.capacity == 1_000)
    }
}
