import Foundation
import Lodestone

/// libFuzzer's driver (exported by the toolchain's libFuzzer when built with
/// `-sanitize=fuzzer`).
public typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: FuzzCallback) -> CInt

/// Runs libFuzzer with the process's arguments and `callback`.
public func runFuzzer(_ callback: FuzzCallback) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}

/// The input as bytes.
public func bytes(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    count == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: count))
}

/// A scratch directory for this process (tmpfs when there is one).
public let scratch: String = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let dir = base + "/lodestone-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: "/dev/shm/lodestone-fuzz-\(getpid())") }
    return dir
}()

/// Writes `bytes` to `path`.
public func write(_ bytes: [UInt8], to path: String) {
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

/// A fuzz finding that is not a crash: a broken invariant.
public func violated(_ message: String) -> Never {
    FileHandle.standardError.write(Data("INVARIANT VIOLATED: \(message)\n".utf8))
    abort()
}

/// A small golden database (a flat and an HNSW index over 8-d vectors with
/// metadata, persisted) built once per process: the seed for the file targets.
public let golden: String = {
    let dir = scratch + "/golden"
    if FileManager.default.fileExists(atPath: dir + "/flat/MANIFEST") { return dir }
    let db = try! Database(path: dir)
    for (name, kind) in [("flat", IndexKind.flat), ("graph", IndexKind.hnsw)] {
        let index = try! db.createIndex(name: name, dimension: 8, metric: .euclidean,
                                        options: IndexOptions(kind: kind, hnsw: HNSWParameters(m: 4, efConstruction: 16)))
        var records: [Record] = []
        for i in 0..<40 {
            var values: [Float] = []
            for d in 0..<8 { values.append(Float((d * 7 + i * 13) % 17) - 8) }
            let metadata: Metadata = ["g": .number(Double(i % 5)), "t": .string("x\(i % 3)")]
            records.append(Record(id: "r\(i)", values: values, metadata: metadata))
        }
        try! index.upsert(records)
        try! index.persist()
        try! index.upsert([Record(id: "tail", values: [Float](repeating: 1, count: 8))])
    }
    return dir
}()
