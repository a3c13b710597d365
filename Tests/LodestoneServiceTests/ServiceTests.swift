#if ServiceIntegration
import Foundation
import InMemoryLogging
import InMemoryTracing
import Logging
import MetricsTestKit
import ServiceLifecycle
import Synchronization
import Testing
@_spi(LodestoneTools) @testable import Lodestone
@testable import LodestoneService

@Suite("LodestoneService: instrumented handles, metrics, spans, logs, graceful shutdown")
struct ServiceTests {
    /// A service on a fresh directory with test metrics, an in-memory tracer and logger.
    struct Harness {
        let service: LodestoneService
        let metrics: TestMetrics
        let tracer: InMemoryTracer
        let logs: InMemoryLogHandler
        let path: String

        init(durability: Durability = .synchronous, path: String = Fixtures.freshPath("service")) throws {
            metrics = TestMetrics()
            tracer = InMemoryTracer()
            logs = InMemoryLogHandler()
            var logger = Logger(label: "test", factory: { [logs] _ in logs })
            logger.logLevel = .debug
            self.path = path
            service = try LodestoneService(
                configuration: .init(path: path, durability: durability, metricsInterval: .milliseconds(20),
                                     metricsFactory: metrics, tracer: tracer),
                logger: logger)
        }

        func counter(_ label: String, _ dimensions: [(String, String)]) -> Int64 {
            metrics.counters(label: label, dimensions: dimensions).reduce(0) { $0 + $1.totalValue }
        }
    }

    /// The first `n` real records (pypi-minilm slice, or the Data/ sample).
    static func records(_ n: Int) -> [Record] { Array(Fixtures.realRecords.prefix(n)) }

    @Test("queries through a handle equal exact float64 answers, and are counted, timed and traced")
    func queriesMeasured() async throws {
        let h = try Harness()
        let records = Self.records(2_000)
        let index = try await h.service.createIndex(name: "docs", dimension: 384, metric: .cosine,
                                                    options: IndexOptions(kind: .flat))
        for start in stride(from: 0, to: records.count, by: 500) {
            try await index.upsert(Array(records[start..<min(start + 500, records.count)]))
        }
        let filter = try Filter(json: #"{"year": {"$gte": 2025}}"#)
        let passing = records.indices.filter { filter.matches(records[$0].metadata ?? [:]) }
        let base = passing.flatMap { records[$0].values }
        let queries = Fixtures.realData.queries
        for q in 0..<20 {
            let query = queries.row(q)
            let got = try index.query(vector: query, topK: 10, filter: filter).matches.map(\.id)
            let exact = Fixtures.bruteForce(base: base, dimension: 384, query: query, metric: .cosine, k: 10)
                .map { records[passing[$0.0]].id }
            #expect(got == exact, "query \(q)")
        }
        let d = [("index", "docs")]
        #expect(h.counter("lodestone_queries_total", d) == 20)
        #expect(try h.metrics.expectTimer("lodestone_query_duration_seconds", d).values.count == 20)
        #expect(h.counter("lodestone_upserted_records_total", d) == 2_000)
        #expect(h.counter("lodestone_operations_total", d + [("operation", "upsert")]) == 4)
        let spans = h.tracer.finishedSpans
        let querySpans = spans.filter { $0.operationName == "lodestone.query" }
        #expect(querySpans.count == 20)
        #expect(querySpans.first?.attributes["lodestone.index"]?.toSpanAttribute() == "docs")
        #expect(querySpans.first?.attributes["lodestone.top_k"]?.toSpanAttribute() == 10)
        #expect(spans.filter { $0.operationName == "lodestone.upsert" }.count == 4)

        // The polled figures: one log sync per synchronous upsert batch, the record count.
        h.service.collectMetrics()
        #expect(h.counter("lodestone_log_syncs_total", d) >= 4)
        #expect(try h.metrics.expectGauge("lodestone_records", d).lastValue == 2_000)
        #expect(try h.metrics.expectGauge("lodestone_vector_bytes", d).lastValue ?? 0 >= Double(2_000 * 384 * 4))
        try await h.service.shutdown()
    }

    @Test("text and sparse queries through a handle: BM25 over the text field, counted and traced; a text query on an index without a text field fails typed")
    func textQueriesMeasured() async throws {
        let h = try Harness(durability: .none)
        let records = Self.records(1_000)
        let index = try await h.service.createIndex(name: "docs", dimension: 384, metric: .cosine,
                                                    options: IndexOptions(kind: .flat, textField: "text"))
        try await index.upsert(records)
        guard case let .string(text)? = records[5].metadata?["text"] else { Issue.record("no text"); return }
        let byText = try index.query(text: text, topK: 5, includeMetadata: true)
        #expect(byText.matches.first?.metadata?["text"] == .string(text))
        let keywords = index.index.lock.reading { index.index.textQueryVector(text) }
        let bySparse = try index.query(sparseVector: keywords, topK: 5)
        #expect(bySparse.matches.map(\.id) == byText.matches.map(\.id))
        let hybrid = try index.query(text: text, vector: records[5].values, topK: 3)
        #expect(hybrid.matches.first?.id == records[5].id)
        let d = [("index", "docs")]
        #expect(h.counter("lodestone_queries_total", d) == 3)
        #expect(h.tracer.finishedSpans.filter { $0.operationName == "lodestone.query" }.count == 3)
        let plain = try await h.service.createIndex(name: "plain", dimension: 384, metric: .cosine)
        #expect(throws: LodestoneError.self) { try plain.query(text: "python", topK: 3) }
        try await h.service.shutdown()
    }

    @Test("the beam width of each HNSW query is recorded")
    func efRecorded() async throws {
        let h = try Harness(durability: .none)
        let index = try await h.service.createIndex(name: "g", dimension: 384, metric: .cosine)
        try await index.upsert(Self.records(300))
        let q = Fixtures.realData.queries.row(0)
        _ = try index.query(vector: q, topK: 5)
        _ = try index.query(vector: q, topK: 5, ef: 77)
        let ef = try h.metrics.expectRecorder("lodestone_query_ef", [("index", "g")]).values
        #expect(ef == [Double(index.index.parameters.efSearch), 77])
        try await h.service.shutdown()
    }

    @Test("bad input through the service: the typed error, nothing stored, counted, the span marked")
    func badInput() async throws {
        let h = try Harness()
        let index = try await h.service.createIndex(name: "b", dimension: 384, metric: .cosine)
        let good = Self.records(10)
        try await index.upsert(good)
        var bad = Self.records(12)
        bad[11].values[3] = .nan
        let error = await #expect(throws: LodestoneError.self) { try await index.upsert(bad) }
        guard case .nonFiniteComponent(3, _)? = error else {
            Issue.record("expected nonFiniteComponent(3, nan), got \(String(describing: error))")
            return
        }
        #expect(try index.index.count() == 10)
        #expect(throws: LodestoneError.dimensionMismatch(expected: 384, actual: 3)) {
            try index.query(vector: [1, 2, 3], topK: 1)
        }
        #expect(throws: LodestoneError.self) { try index.query(vector: good[0].values, topK: 0) }
        let d = [("index", "b")]
        #expect(h.counter("lodestone_errors_total", d + [("operation", "upsert"), ("error", "non_finite_component")]) == 1)
        #expect(h.counter("lodestone_errors_total", d + [("operation", "query"), ("error", "dimension_mismatch")]) == 1)
        #expect(h.counter("lodestone_errors_total", d + [("operation", "query"), ("error", "invalid_argument")]) == 1)
        #expect(h.counter("lodestone_queries_total", d) == 0)
        let failedSpan = h.tracer.finishedSpans.first { $0.operationName == "lodestone.upsert" && !$0.errors.isEmpty }
        #expect(failedSpan?.status?.code == .error)
        // A caller's mistake is logged at debug, not as an error.
        #expect(h.logs.entries.contains { $0.level == .debug && "\($0.message)".contains("upsert failed") })
        #expect(!h.logs.entries.contains { $0.level == .error })
        try await h.service.shutdown()
    }
}
#endif
