import Foundation

/// Writes `seeds` into the first corpus directory named on the command line
/// when it is empty (libFuzzer then starts from them).
public func seedCorpus(_ seeds: @autoclosure () -> [[UInt8]]) {
    guard let dir = CommandLine.arguments.dropFirst().first(where: { !$0.hasPrefix("-") }) else { return }
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    guard (try? FileManager.default.contentsOfDirectory(atPath: dir))?.isEmpty ?? true else { return }
    for (i, s) in seeds().enumerated() { write(s, to: dir + "/seed-\(i)") }
}

/// The bytes of a file of the golden database.
public func goldenFile(_ index: String, _ prefix: String) -> [UInt8] {
    let dir = golden + "/" + index
    let name = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.first { $0.hasPrefix(prefix) } ?? prefix
    return (try? Array(Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))) ?? []
}

/// A copy of the golden index `index` in `case`, with the file starting with
/// `prefix` replaced by `bytes`.
public func goldenCopy(_ index: String, replacing prefix: String, with bytes: [UInt8]) -> String {
    let target = scratch + "/case"
    try? FileManager.default.removeItem(atPath: target)
    try? FileManager.default.createDirectory(atPath: target + "/" + index, withIntermediateDirectories: true)
    for name in (try? FileManager.default.contentsOfDirectory(atPath: golden + "/" + index)) ?? [] where name != "LOCK" {
        if name.hasPrefix(prefix) {
            write(bytes, to: target + "/" + index + "/" + name)
        } else {
            try? FileManager.default.copyItem(atPath: golden + "/" + index + "/" + name, toPath: target + "/" + index + "/" + name)
        }
    }
    return target
}
