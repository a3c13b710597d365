import Foundation
import Testing

/// Rules of the source tree that review keeps forgetting (docs/architecture.md).
@Suite("Architecture: the rules docs/architecture.md states")
struct ArchitectureTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources")

    static func files(under folder: String, extensions: Set<String>) -> [URL] {
        let root = sources.appendingPathComponent(folder)
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
        return walker.compactMap { $0 as? URL }.filter { extensions.contains($0.pathExtension) }
            .sorted { $0.path < $1.path }
    }

    @Test("the library and the C ABI call the operating system only through SystemCalls")
    func oneSystemCallSeam() throws {
        // A C call: the name, not a member (no '.' before it), not a
        // declaration, its first argument unlabeled.
        let names = "open|close|read|write|pread|pwrite|fsync|fdatasync|ftruncate|rename|unlink|mkdir|rmdir|link|access|"
            + "fstat|stat|mmap|munmap|madvise|flock|opendir|readdir|closedir|usleep|sleep|sysconf|getpid|kill|pause"
        let call = try NSRegularExpression(pattern: "(?<![.\\w])(?<!func )(\(names))\\((?!\\s*\\w+\\s*:)")
        let qualified = try NSRegularExpression(pattern: "\\b(Glibc|Darwin|Musl)\\.")
        func matches(_ r: NSRegularExpression, _ s: String) -> Bool {
            r.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
        }
        var offenders: [String] = []
        let files = Self.files(under: "Lodestone", extensions: ["swift"]) + Self.files(under: "LodestoneCAPI", extensions: ["swift"])
        #expect(files.count > 50, "found the sources")
        for file in files where file.lastPathComponent != "SystemCalls.swift" {
            let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            for (n, line) in lines.enumerated() {
                let code = line.trimmingCharacters(in: .whitespaces)
                if code.hasPrefix("//") { continue }
                if matches(call, code) || matches(qualified, code) {
                    offenders.append("\(file.lastPathComponent):\(n + 1): \(code)")
                }
            }
        }
        // The library's own methods that share a C name take a value first:
        // allow those by their receivers' known spellings.
        let allowed = ["write(s.withUTF8", "write(directory + ", "write(results, k:", "write(&w", "link(part[",
                       "try open()"]
        offenders.removeAll { o in allowed.contains { o.contains($0) } }
        #expect(offenders.isEmpty, "system calls outside Support/SystemCalls.swift:\n\(offenders.joined(separator: "\n"))")
    }

    @Test("no source file passes 500 lines")
    func roomsOfALivableSize() throws {
        var large: [String] = []
        let tools = Self.sources.deletingLastPathComponent().appendingPathComponent("Tools/Sources")
        let folders = try FileManager.default.contentsOfDirectory(atPath: Self.sources.path)
            + FileManager.default.contentsOfDirectory(atPath: tools.path).map { "../Tools/Sources/" + $0 }
        for folder in folders {
            for file in Self.files(under: folder, extensions: ["swift", "c", "h"]) {
                let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).count
                if lines > 500 { large.append("\(folder)/\(file.lastPathComponent): \(lines) lines") }
            }
        }
        #expect(large.isEmpty, "split these by concern (Type+Concern.swift): \(large)")
    }
}
