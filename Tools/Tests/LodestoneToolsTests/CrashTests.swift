import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

#if canImport(Glibc)
import Glibc
#endif

/// The executables this package builds, found beside the test bundle.
enum Tools {
    /// `lodestone`.
    static var lodestone: String { product("lodestone") }
    /// `lodestone-stress`: the reliability drivers (the crash workload).
    static var stress: String { product("lodestone-stress") }

    static func product(_ name: String) -> String {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [products.appendingPathComponent(name).path,
                          Fixtures.repositoryRoot.appendingPathComponent("Tools/.build/debug/\(name)").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }
}

/// The crash workload of `lodestone-stress`, killed and failed from outside:
/// what a process death does to a durable index.
@Suite("Durable index: crashes and failures in a child process")
struct CrashTests {
    /// The state of an index as key → vector.
    static func snapshot(_ index: HNSWIndex, keys: Range<UInt64>) -> [UInt64: [Float]] {
        var out: [UInt64: [Float]] = [:]
        for key in keys { if let v = index.vector(forKey: key) { out[key] = v } }
        return out
    }

    /// The model's state after applying `ops` of run `seed` to `state`.
    static func apply(_ state: [UInt64: [Float]], seed: Int, ops: Range<Int>) -> [UInt64: [Float]] {
        var s = state
        for i in ops {
            let key = UInt64((seed * 7919 + i * 104_729) % 300)
            if i % 10 == 9 { continue }
            if i % 4 == 3 { s[key] = nil; continue }
            s[key] = (0..<8).map { j in Float((seed * 13 + i * 31 + j * 17) % 97) / 10 + 0.1 }
        }
        return s
    }

    @Test("a persist that fails (writes past a file size limit, like a full disk) leaves the previous state intact")
    func failedPersist() throws {
        let exe = Tools.stress
        try #require(FileManager.default.isExecutableFile(atPath: exe), "build the lodestone-stress executable first (swift build --package-path Tools): \(exe)")
        let dir = Fixtures.freshPath("durable")
        // A first run persists (op 9) and leaves a segment of a known size.
        let first = Process()
        first.executableURL = URL(fileURLWithPath: exe)
        first.arguments = ["crash-workload", "--dir", dir, "--seed", "1", "--ops", "40"]
        try first.run()
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        var model = Self.apply([:], seed: 1, ops: 0..<40)
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let segment = try #require(before.first { $0.hasPrefix("segment-") })
        let segmentBytes = try VectorFiles.readFile(dir + "/" + segment).count
        // The second run's persist at op 9 cannot write a whole segment.
        let second = Process()
        second.executableURL = URL(fileURLWithPath: exe)
        second.arguments = ["crash-workload", "--dir", dir, "--seed", "2", "--ops", "40",
                            "--file-size-limit", String(segmentBytes / 2)]
        let pipe = Pipe()
        second.standardOutput = pipe
        second.standardError = Pipe()
        try second.run()
        second.waitUntilExit()
        let acked = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").filter { $0.hasPrefix("ack ") }.count
        #expect(second.terminationStatus != 0, "the persist should have failed")
        #expect(acked == 9, "ops 0-8 acknowledged, the persist at op 9 failed")
        model = Self.apply(model, seed: 2, ops: 0..<acked)
        let reopened = try DurableIndex.open(directory: dir)
        #expect(Self.snapshot(reopened.index, keys: 0..<300) == model)
        try reopened.index.verify()
        let after = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(after == before, "no leftover of the failed persist: \(after)")
    }

    @Test("SIGKILL at random moments: every acknowledged write survives, nothing is half-applied",
          arguments: [(Durability.synchronous, 60), (.groupCommit, 30)])
    func crashes(durability: Durability, kills: Int) throws {
        let exe = Tools.stress
        try #require(FileManager.default.isExecutableFile(atPath: exe), "build the lodestone-stress executable first (swift build --package-path Tools): \(exe)")
        let dir = Fixtures.freshPath("durable")
        var model: [UInt64: [Float]] = [:]
        var rng = Fixtures.SeededGenerator(seed: 2026)
        var inFlightApplied = 0, totalAcked = 0, createKills = 0
        for run in 0..<kills {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: exe)
            process.arguments = ["crash-workload", "--dir", dir, "--seed", String(run), "--ops", "100000",
                                 "--durability", durability.rawValue]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            // The first runs die within milliseconds (before, inside or
            // just after create); the rest after some hundreds of writes.
            let pause: ClosedRange<UInt32> = run < 3 ? 0...(UInt32(run) * 40_000 + 5_000) : 30_000...250_000
            usleep(UInt32.random(in: pause, using: &rng))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // Only the kill ends it: a workload that exits by itself (say,
            // a create that fails) would leave nothing to check.
            #expect(process.terminationReason == .uncaughtSignal,
                    "run \(run): the workload exited with status \(process.terminationStatus) before the kill")
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let acked = output.split(separator: "\n").filter { $0.hasPrefix("ack ") }.count
            totalAcked += acked
            // A kill during the first run's create (a loaded machine can
            // take longer than the shortest sleep to get there) leaves no
            // manifest, so no index: nothing may have been acknowledged,
            // and the next run's create must clear what was left.
            guard FileManager.default.fileExists(atPath: dir + "/MANIFEST") else {
                #expect(acked == 0 && model.isEmpty, "run \(run): \(acked) ops acknowledged but no MANIFEST")
                createKills += 1
                continue
            }
            let reopened = try DurableIndex.open(directory: dir)
            let actual = Self.snapshot(reopened.index, keys: 0..<300)
            let done = Self.apply(model, seed: run, ops: 0..<acked)
            let withNext = Self.apply(done, seed: run, ops: acked..<(acked + 1))
            if actual == done {
                model = done
            } else if actual == withNext {
                model = withNext  // the op in flight reached the log before the kill
                inFlightApplied += 1
            } else {
                let missing = done.keys.filter { actual[$0] != done[$0] }.sorted()
                Issue.record("run \(run): after \(acked) acknowledged ops the index differs from the model at keys \(missing.prefix(10))")
                return
            }
            #expect(reopened.index.count == model.count)
        }
        #expect(createKills < kills / 2 && totalAcked > 0, "\(createKills) runs died before the index existed")
        print("crash test (\(durability.rawValue)): \(kills) kill points, \(totalAcked) acknowledged writes checked, \(inFlightApplied) in-flight ops found applied, \(createKills) kills before the index existed")
    }
}
