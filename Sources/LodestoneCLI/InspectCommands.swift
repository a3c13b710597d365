import ArgumentParser
import Foundation
import Lodestone

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

/// `lodestone verify FILE`: checks every checksum and link of a segment.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Verify every checksum and every link of a segment file (exit 1 if damaged).")

    @Argument(help: "A segment file written by persist.") var file: String

    func run() throws {
        let t0 = now()
        let index = try HNSWIndex.open(path: file)
        do {
            try index.verify()
        } catch {
            print("DAMAGED: \(error)")
            throw ExitCode.failure
        }
        print(String(format: "ok: %@: %d live vectors, every section and chunk checksum and every link verified in %.1f ms",
                     file, index.count, (now() - t0) * 1000))
    }
}
