import ArgumentParser
import Foundation
import Lodestone

/// `lodestone reliability-workload`: the child the kill-point driver kills.
struct ReliabilityWorkloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-workload", abstract: "Run the kill-point workload (a child of reliability-kill).",
        shouldDisplay: false)
    @Option var dir: String
    @Option var seed: Int = 1

    func run() throws { try ReliabilityWorkload.run(directory: dir, seed: seed) }
}

/// `lodestone reliability-kill`: kills the workload at every storage
/// operation in turn (and, with `--random`, at random moments), reopens, and
/// checks every invariant; prints one JSON summary line.
struct ReliabilityKillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-kill",
        abstract: "Kill the reliability workload at every I/O operation and at random moments; check recovery.",
        shouldDisplay: false)
    @Option(help: "Scratch directory (tmpfs is fastest).") var work: String = "/dev/shm/lodestone-kill"
    @Option var seed: Int = 1
    @Option(help: "Random-moment kills.") var random: Int = 100
    @Option(help: "Stop after this many deterministic kill points (0: all).") var limit: Int = 0
    @Flag(help: "Print each failure as it happens.") var verbose = false

    struct Outcome {
        var acked = 0
        var status: Int32 = 0
        var signaled = false
        var ioOps = 0
        /// The operation killed (deterministic mode).
        var killedOperation = ""
    }

    func child(_ dir: String, environment: [String: String], killAfterAcks: Int? = nil) throws -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        p.arguments = ["reliability-workload", "--dir", dir, "--seed", String(seed)]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        var outcome = Outcome()
        var buffer = Data()
        let handle = out.fileHandleForReading
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            let acks = buffer.split(separator: UInt8(ascii: "\n")).filter { $0.starts(with: Array("ack ".utf8)) }.count
            if let k = killAfterAcks, acks >= k {
                usleep(UInt32.random(in: 0...2_000))
                kill(p.processIdentifier, SIGKILL)
                buffer.append(handle.readDataToEndOfFile())
                break
            }
        }
        p.waitUntilExit()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        outcome.acked = String(decoding: buffer, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("ack ") }.count
        outcome.status = p.terminationStatus
        outcome.signaled = p.terminationReason == .uncaughtSignal
        if let line = errText.split(separator: "\n").last(where: { $0.hasPrefix("io-ops ") }) {
            outcome.ioOps = Int(line.dropFirst(7)) ?? 0
        }
        if let line = errText.split(separator: "\n").last(where: { $0.hasPrefix("io-kill ") }) {
            outcome.killedOperation = String(line.split(separator: " ").last ?? "")
        }
        if !outcome.signaled && outcome.status != 0 && verbose { FileHandle.standardError.write(Data(errText.utf8)) }
        return outcome
    }

    func run() throws {
        let t0 = now()
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        // A counting run: how many storage operations the workload makes.
        let counting = try child(work + "/count", environment: ["LODESTONE_IO_COUNT": "1"])
        guard counting.status == 0, counting.acked == ReliabilityWorkload.steps, counting.ioOps > 0 else {
            throw CLIError("the workload did not complete (status \(counting.status), \(counting.acked) acks)")
        }
        if let failure = ReliabilityWorkload.check(directory: work + "/count", seed: seed, acked: counting.acked) {
            throw CLIError("the uninterrupted workload fails its own check: \(failure)")
        }
        var failures: [String] = []
        var deterministic = 0, survived = 0, torn = 0
        var operations: [String: Int] = [:]
        let points = limit > 0 ? min(limit, counting.ioOps) : counting.ioOps
        for k in 1...points {
            // Every point is killed just before its operation; a write is also
            // killed half written (a torn write).
            for mode in ["before", "torn"] {
                let dir = work + "/k\(k)-\(mode)"
                let o = try child(dir, environment: ["LODESTONE_IO_KILL_AT": String(k), "LODESTONE_IO_KILL_MODE": mode])
                deterministic += 1
                if mode == "torn" { torn += 1 }
                operations[o.killedOperation.isEmpty ? "none" : o.killedOperation, default: 0] += mode == "before" ? 1 : 0
                if let f = ReliabilityWorkload.check(directory: dir, seed: seed, acked: o.acked) {
                    failures.append("kill at op \(k) (\(mode) \(o.killedOperation)), \(o.acked) acks: \(f)")
                    if verbose { print(failures.last!) }
                } else {
                    survived += 1
                }
                try? FileManager.default.removeItem(atPath: dir)
                if o.killedOperation != "write" { break }
            }
        }
        var randomSurvived = 0
        for r in 0..<random {
            let dir = work + "/r\(r)"
            let o = try child(dir, environment: [:], killAfterAcks: Int.random(in: 0..<ReliabilityWorkload.steps))
            if let f = ReliabilityWorkload.check(directory: dir, seed: seed, acked: o.acked) {
                failures.append("random kill \(r), \(o.acked) acks: \(f)")
                if verbose { print(failures.last!) }
            } else {
                randomSurvived += 1
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
        var line = JSONLine()
        line.set("io_operations", counting.ioOps)
        line.set("kill_points_deterministic", deterministic)
        line.set("kill_points_torn_writes", torn)
        line.set("killed_operations", operations.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: " "))
        line.set("kill_points_random", random)
        line.set("kill_points_survived", survived + randomSurvived)
        line.set("kill_points_failed", failures.count)
        line.set("seconds", now() - t0, digits: 1)
        print(line.text)
        for f in failures.prefix(20) { FileHandle.standardError.write(Data("FAIL \(f)\n".utf8)) }
        if !failures.isEmpty { throw ExitCode.failure }
    }
}
