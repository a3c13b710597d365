import Foundation
import LodestoneFuzzChecks
import Testing

/// Replays the committed fuzz corpus (Fuzz/seeds/<target>/: inputs minimised
/// from long fuzzing runs, plus any finding once fixed) through the same
/// checks the libFuzzer targets in Fuzz/ run, so a regression shows up in the
/// normal test run without a fuzzer build.
@Suite struct FuzzCorpusTests {
    static let seeds = Fixtures.repositoryRoot.appendingPathComponent("Fuzz/seeds")

    /// The committed inputs of `target`, sorted by name.
    static func inputs(_ target: FuzzTarget) -> [(name: String, bytes: [UInt8])] {
        let dir = seeds.appendingPathComponent(target.rawValue)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
        return names.compactMap { name in
            (try? Data(contentsOf: dir.appendingPathComponent(name))).map { (name, Array($0)) }
        }
    }

    @Test(arguments: FuzzTarget.allCases)
    func committedCorpusPasses(_ target: FuzzTarget) throws {
        let inputs = Self.inputs(target)
        #expect(inputs.count >= 5, "Fuzz/seeds/\(target.rawValue) should hold a committed corpus")
        let scratch = Fixtures.temporaryDirectory("fuzz-\(target.rawValue)")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let workspace = FuzzWorkspace(scratch: scratch)
        let generated = target.generatedSeeds(in: workspace).enumerated().map { ("generated-\($0.offset)", $0.element) }
        #expect(generated.allSatisfy { !$0.1.isEmpty }, "a generated seed is empty")
        for (name, bytes) in inputs + generated {
            do {
                try target.check(bytes, in: workspace)
            } catch {
                Issue.record("\(target.rawValue)/\(name): \(error)")
            }
        }
    }
}
