import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone bench-json`: the one JSON reader and writer against
/// Foundation's, on the documents Lodestone reads and writes most.
struct JSONBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-json",
        abstract: "Measure the JSON reader and writer against JSONDecoder, JSONSerialization and JSONEncoder.")

    @Option(help: "Vector dimension of the generated documents.") var dim: Int = 384
    @Option(help: "Seconds per contender per round.") var seconds: Double = 0.3
    @Option(help: "Rounds (the contenders alternate within each; the best round counts).") var rounds: Int = 3
    @Flag(help: "Print JSON lines.") var json = false

    /// The best-case Codable reading: straight into the fields wanted.
    struct RecordShape: Decodable {
        var id: String
        var values: [Float]
        var metadata: [String: JSONValue]?
        var namespace: String?
    }

    /// What JSONEncoder writes for an export line (no metadata: JSONValue
    /// is not Encodable, which flatters the encoder).
    struct RecordOut: Encodable {
        var id: String
        var values: [Float]
        var namespace: String
    }

    struct UpsertShape: Decodable {
        var vectors: [RecordShape]
        var namespace: String?
    }

    struct QueryShape: Decodable {
        var vector: [Float]
        var topK: Int
        var includeMetadata: Bool?
        var filter: JSONValue?
        var namespace: String?
    }

    func run() throws {
        var rng = SplitMix64(seed: 7)
        func floats() -> [Float] { (0..<dim).map { _ in Float(Double(rng.next() % 2_000_001) / 1e6 - 1) } }
        func record(_ i: Int) -> Record {
            Record(id: "doc-\(i)", values: floats(),
                   metadata: ["title": .string("A package that does thing number \(i)"), "year": .number(Double(2000 + i % 25)),
                              "tags": ["python", "json", "tag\(i % 7)"]])
        }
        func recordJSON(_ r: Record, namespace: String?, into w: inout JSONWriter) {
            w.object { w in
                w.field("id", r.id)
                w.key("values"); w.floats(r.values)
                w.key("metadata"); w.metadata(r.metadata!)
                if let namespace { w.field("namespace", namespace) }
            }
        }
        var query = JSONWriter()
        query.object { w in
            w.key("vector"); w.floats(floats())
            w.field("topK", 10)
            w.key("includeMetadata"); w.bool(true)
            w.key("filter")
            w.json(try! JSONValue.parse(#"{"year": {"$gte": 2020}, "tags": {"$in": ["python", "rust"]}}"#))
            w.field("namespace", "docs")
        }
        var upsert = JSONWriter(capacity: 1 << 20)
        upsert.object { w in
            w.key("vectors")
            w.array { w in for i in 0..<100 { recordJSON(record(i), namespace: nil, into: &w) } }
            w.field("namespace", "docs")
        }
        let one = record(1)
        var line = JSONWriter()
        recordJSON(one, namespace: "docs", into: &line)
        let documents: [(name: String, bytes: [UInt8])] = [
            ("query body", query.bytes), ("upsert body (100 records)", upsert.bytes), ("export line", line.bytes),
        ]

        typealias Contender = (name: String, run: ([UInt8], Data) throws -> Int)
        let decoder = JSONDecoder()
        func readers(for document: String) -> [Contender] {
            var list: [Contender] = [
                ("Lodestone reader", { b, _ in if case .object = try JSONValue.parse(bytes: b) { return 1 }; return 0 }),
                ("JSONDecoder -> JSONValue", { _, d in if case .object = try decoder.decode(JSONValue.self, from: d) { return 1 }; return 0 }),
                ("JSONSerialization", { _, d in try JSONSerialization.jsonObject(with: d) is NSDictionary ? 1 : 0 }),
            ]
            switch document {
            case "query body": list.append(("JSONDecoder -> struct", { _, d in try decoder.decode(QueryShape.self, from: d).topK }))
            case "export line": list.append(("JSONDecoder -> struct", { _, d in try decoder.decode(RecordShape.self, from: d).values.count }))
            default: list.append(("JSONDecoder -> struct", { _, d in try decoder.decode(UpsertShape.self, from: d).vectors.count }))
            }
            return list
        }
        let encoder = JSONEncoder()
        let shape = RecordOut(id: one.id, values: one.values, namespace: "docs")
        let writers: [Contender] = [
            ("Lodestone writer", { _, _ in
                var w = JSONWriter(capacity: 8192)
                recordJSON(one, namespace: "docs", into: &w)
                return w.bytes.count
            }),
            ("JSONEncoder (struct, no metadata)", { _, _ in try encoder.encode(shape).count }),
        ]

        func measure(_ c: Contender, _ bytes: [UInt8], _ data: Data) throws -> Double {
            var sink = 0, done = 0
            let start = now()
            var elapsed = 0.0
            while elapsed < seconds {
                for _ in 0..<8 { sink &+= try c.run(bytes, data) }
                done += 8
                elapsed = now() - start
            }
            if sink == -1 { print(sink) }
            return elapsed / Double(done)
        }
        var jobs: [(document: String, bytes: [UInt8], contenders: [Contender])] =
            documents.map { ($0.name, $0.bytes, readers(for: $0.name)) }
        jobs.append(("write export line", line.bytes, writers))
        for job in jobs {
            let data = Data(job.bytes)
            var best = [Double](repeating: .infinity, count: job.contenders.count)
            for _ in 0..<max(rounds, 1) {
                for (i, c) in job.contenders.enumerated() { best[i] = min(best[i], try measure(c, job.bytes, data)) }
            }
            for (i, c) in job.contenders.enumerated() {
                var out = JSONLine()
                out.set("document", job.document)
                out.set("bytes", job.bytes.count)
                out.set("contender", c.name)
                out.set("us", best[i] * 1e6, digits: 2)
                out.set("mb_per_s", Double(job.bytes.count) / best[i] / 1e6, digits: 1)
                out.set("vs_lodestone", best[i] / best[0], digits: 2)
                if json {
                    print(out.text)
                } else {
                    print(job.document.padding(toLength: 26, withPad: " ", startingAt: 0)
                          + String(format: "%8d B  ", job.bytes.count)
                          + c.name.padding(toLength: 34, withPad: " ", startingAt: 0)
                          + String(format: "%9.2f us %7.1f MB/s  %5.2fx the time of ours", best[i] * 1e6,
                                   Double(job.bytes.count) / best[i] / 1e6, best[i] / best[0]))
                }
            }
        }
    }
}
