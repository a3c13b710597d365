import Foundation
import Testing
@testable import Lodestone

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
