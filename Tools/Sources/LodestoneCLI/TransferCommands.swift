import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

// Export and import of gzip JSON Lines.

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Export every record as gzip'd JSON Lines (Pinecone's record shape).")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Argument(help: "Output file (.jsonl.gz).") var file: String

    func run() throws {
        try CLIExit.run {
            var progress = Progress()
            let t0 = now()
            let n = try options.open().index(name).export(to: file) { p in progress.show("exported \(p.records) records") }
            progress.done()
            options.report(String(format: "exported %d records to %@ in %.2f s", n, file, now() - t0)) {
                $0.set("exported", n)
                $0.set("file", file)
            }
        }
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import gzip'd (or plain) JSON Lines records into an index, creating it if missing.",
        discussion: "Pinecone migration: export there to JSON Lines of {id, values, metadata, namespace}, then import here.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The file (.jsonl.gz or .jsonl).") var file: String
    @Argument(help: "The index (created when missing).") var name: String
    @Option(help: "When creating: cosine, euclidean or dotproduct.") var metric: String = "cosine"
    @Option(help: "When creating: the embedding model (checked against an existing index's).") var model: String = ""
    @Option(help: "When creating: hnsw or flat.") var kind: String = "hnsw"
    @Flag(help: "Skip malformed lines instead of failing before anything is written.") var skipBadLines = false
    @Flag(help: "Leave the writes in the log instead of persisting at the end.") var noPersist = false

    func run() throws {
        try CLIExit.run {
            guard let metric = Metric(name: metric) else { throw ValidationError("unknown metric \(metric)") }
            guard let kind = IndexKind(rawValue: kind) else { throw ValidationError("--kind is hnsw or flat") }
            var progress = Progress()
            let t0 = now()
            let db = try options.open()
            let report = try db.importRecords(
                from: file, into: name, metric: metric, embeddingModel: model, options: IndexOptions(kind: kind),
                skipBadLines: skipBadLines) { p in progress.show("\(p.phase): \(p.lines) lines, \(p.records) records") }
            if !noPersist { try db.index(name).persist() }
            progress.done()
            if options.json {
                var line = JSONLine()
                line.set("imported", report.records)
                line.set("skipped_lines", report.skippedLines)
                line.set("created_index", report.createdIndex)
                print(line.text)
            } else {
                print(String(format: "imported %d records into \"%@\"%@ in %.2f s", report.records, name,
                             report.createdIndex ? " (created)" : "", now() - t0))
                if report.skippedLines > 0 {
                    print("skipped \(report.skippedLines) malformed lines; first: \(report.skippedErrors.first ?? "")")
                }
            }
        }
    }
}
