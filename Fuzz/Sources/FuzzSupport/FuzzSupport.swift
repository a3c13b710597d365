import FuzzChecks
import Foundation

/// libFuzzer's driver (exported by the toolchain's libFuzzer when built with
/// `-sanitize=fuzzer`).
public typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: FuzzCallback) -> CInt

/// This process's workspace, in a scratch directory on tmpfs when there is
/// one, removed at exit.
let workspace: FuzzWorkspace = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()
    let dir = base + "lodestone-fuzz-\(getpid())"
    atexit {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()
        try? FileManager.default.removeItem(atPath: base + "lodestone-fuzz-\(getpid())")
    }
    return FuzzWorkspace(scratch: dir)
}()

/// Runs one input through `target`'s check; a broken invariant aborts, which
/// libFuzzer records as a finding.
public func fuzzOne(_ target: FuzzTarget, _ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = count == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: count))
    do {
        try target.check(input, in: workspace)
    } catch {
        FileHandle.standardError.write(Data("INVARIANT VIOLATED (\(target.rawValue)): \(error)\n".utf8))
        abort()
    }
    return 0
}

/// Seeds an empty corpus with `target`'s generated seeds, then runs libFuzzer
/// with the process's arguments and `callback` (which calls ``fuzzOne(_:_:_:)``).
public func runFuzzer(_ target: FuzzTarget, _ callback: FuzzCallback) -> Never {
    seedCorpus(target)
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}

/// Writes `target`'s generated seeds into the first corpus directory named on
/// the command line when it is empty (libFuzzer then starts from them, and
/// from the committed seeds in Fuzz/seeds/, which Scripts/fuzz.sh passes too).
func seedCorpus(_ target: FuzzTarget) {
    guard let dir = CommandLine.arguments.dropFirst().first(where: { !$0.hasPrefix("-") }) else { return }
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    guard (try? FileManager.default.contentsOfDirectory(atPath: dir))?.isEmpty ?? true else { return }
    for (i, s) in target.generatedSeeds(in: workspace).enumerated() { workspace.write(s, to: dir + "/seed-\(i)") }
}
