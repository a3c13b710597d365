import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone inspect FILE`: the header and sections of a segment file.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Print a segment file's header, sections, sizes, codecs and LZ4 ratios.")

    @Argument(help: "A segment file written by persist.") var file: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let info = try SegmentInfo(path: file)
        if json {
            var line = JSONLine()
            line.set("path", info.path)
            line.set("file_bytes", info.fileBytes)
            line.set("format_version", info.formatVersion)
            line.set("index_kind", info.indexKind)
            line.set("embedding_model", info.embeddingModel)
            line.set("created_ns", Int(info.createdNanoseconds))
            line.set("sections", info.sections.count)
            print(line.text)
            for s in info.sections {
                var l = JSONLine()
                l.set("section", s.name)
                l.set("codec", s.codec)
                l.set("offset", s.offset)
                l.set("stored_bytes", s.storedBytes)
                l.set("raw_bytes", s.rawBytes)
                l.set("records", s.records)
                l.set("stride", s.stride)
                l.set("lz4_ratio", s.compressionRatio, digits: 2)
                l.set("crc32c", String(format: "%08x", s.checksum))
                print(l.text)
            }
            return
        }
        let created = Date(timeIntervalSince1970: Double(info.createdNanoseconds) / 1e9)
        print("\(info.path): Lodestone segment, format \(info.formatVersion), \(info.indexKind) index, \(info.fileBytes) bytes")
        print("embedding model: \(info.embeddingModel.isEmpty ? "(not recorded)" : info.embeddingModel); written \(created)")
        print("section            codec      offset       stored          raw    records  stride  ratio  crc32c")
        for s in info.sections {
            let name = s.name.padding(toLength: 18, withPad: " ", startingAt: 0)
            let codec = s.codec.padding(toLength: 5, withPad: " ", startingAt: 0)
            print(name + " " + codec + String(format: " %11d %12d %12d %10d %7d %6.2f  %08x", s.offset,
                                              s.storedBytes, s.rawBytes, s.records, s.stride, s.compressionRatio, s.checksum))
        }
    }
}

/// `lodestone verify FILE` or `lodestone verify NAME [--vectors F]`.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a segment file, or an index of the database (exit 1 if damaged); --vectors checks that a file's vectors look like the index's model's.")

    @Argument(help: "A segment file written by persist, or an index name in --db.") var target: String
    @Option(help: "The database directory, for an index name (default: $LODESTONE_DB, else ./lodestone-data).")
    var db: String = ProcessInfo.processInfo.environment["LODESTONE_DB"] ?? "lodestone-data"
    @Option(help: "Vectors (.fvecs or .npy) to compare with the index's fingerprint.") var vectors: String?

    func run() throws {
        let t0 = now()
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory), !isDirectory.boolValue {
            let index = try HNSWIndex.open(path: target)
            do {
                try index.verify()
            } catch {
                print("DAMAGED: \(error)")
                throw ExitCode.failure
            }
            print(String(format: "ok: %@: %d live vectors, every section and chunk checksum and every link verified in %.1f ms",
                         target, index.count, (now() - t0) * 1000))
            return
        }
        try CLIExit.run {
            let index = try Database(path: db).index(target)
            do {
                try index.verify()
            } catch {
                print("DAMAGED: \(error)")
                throw ExitCode.failure
            }
            print(String(format: "ok: index \"%@\": %d records; every checksum and link verified in %.1f ms",
                         target, index.count, (now() - t0) * 1000))
            if let vectors {
                let m = try VectorFiles.readFloats(vectors)
                let report = try index.compareWithStored((0..<m.rows).map { m.row($0) })
                print("\(vectors): \(report.summary)")
                if report.looksLikeAnotherModel { throw ExitCode(6) }
            }
        }
    }
}
