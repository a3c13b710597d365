import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone-stress reliability-workload`: the child the kill-point and
/// failed-operation drivers run.
struct ReliabilityWorkloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-workload", abstract: "Run the reliability workload (a child of reliability-kill and reliability-fail).")
    @Option var dir: String
    @Option var seed: Int = 1
    @Option(help: "On an error: stop, retry (report, check memory against the model, retry the step once) or skip (report, go on; at the end, reopen and compare with what the indexes held).")
    var onError: ErrorPolicy = .stop

    enum ErrorPolicy: String, ExpressibleByArgument { case stop, retry, skip }

    func run() throws {
        let report: ReliabilityWorkload.OnError.Report = { step, error, inconsistency in
            let kind = error is LodestoneError ? "typed" : "untyped"
            var line = "error \(step) \(kind) \(String(describing: error).replacingOccurrences(of: "\n", with: " "))\n"
            if let inconsistency { line += "inconsistent \(step) \(inconsistency)\n" }
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        let policy: ReliabilityWorkload.OnError
        switch onError {
        case .stop:
            try ReliabilityWorkload.run(directory: dir, seed: seed)
            return
        case .retry: policy = .retryOnce(report: report)
        case .skip: policy = .skip(report: report)
        }
        let held: [ReliabilityWorkload.State]
        do {
            held = try ReliabilityWorkload.run(directory: dir, seed: seed, onError: policy)
        } catch {
            let kind = error is LodestoneError ? "typed" : "untyped"
            FileHandle.standardOutput.write(Data("refused \(kind) \(error)\n".utf8))
            throw ExitCode(3)
        }
        // The indexes are closed now: what reopening finds must be what
        // their readers saw last, every step after the failure included.
        let db = try Database(path: dir)
        for (name, state) in zip(ReliabilityWorkload.indexes, held) {
            let found = try ReliabilityWorkload.records(of: db.index(name))
            if !ReliabilityWorkload.same(found, state) {
                FileHandle.standardOutput.write(Data(
                    "diverged \(name): \(state.count) records held before closing, \(found.count) after reopening\n".utf8))
            }
        }
    }
}

/// One run of the workload in a child process, and what it reported.
struct WorkloadChild {
    /// Steps acknowledged (`ack i` lines).
    var acked = 0
    var status: Int32 = 0
    var signaled = false
    /// Storage operations counted (`LODESTONE_IO_COUNT`).
    var ioOps = 0
    /// The operation killed or failed (`io-kill`/`io-fail` on stderr).
    var operation = ""
    /// The child's stdout lines other than acks (errors, retries, refusals).
    var reports: [String] = []
    var stderr = ""

    /// Runs `lodestone-stress reliability-workload` in `dir` with `environment`
    /// added; with `killAfterAcks`, SIGKILLs it soon after that many acks.
    static func run(_ dir: String, seed: Int, onError: String = "stop", environment: [String: String],
                    killAfterAcks: Int? = nil) throws -> WorkloadChild {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        p.arguments = ["reliability-workload", "--dir", dir, "--seed", String(seed), "--on-error", onError]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
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
        var outcome = WorkloadChild()
        outcome.stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let lines = String(decoding: buffer, as: UTF8.self).split(separator: "\n")
        outcome.acked = lines.filter { $0.hasPrefix("ack ") }.count
        outcome.reports = lines.filter { !$0.hasPrefix("ack ") }.map(String.init)
        outcome.status = p.terminationStatus
        outcome.signaled = p.terminationReason == .uncaughtSignal
        let errLines = outcome.stderr.split(separator: "\n")
        if let line = errLines.last(where: { $0.hasPrefix("io-ops ") }) { outcome.ioOps = Int(line.dropFirst(7)) ?? 0 }
        if let line = errLines.last(where: { $0.hasPrefix("io-kill ") || $0.hasPrefix("io-fail ") }) {
            outcome.operation = String(line.split(separator: " ").last ?? "")
        }
        return outcome
    }

    /// Makes `work` a fresh, empty scratch directory, then counts the
    /// workload's storage operations in it (see ``countOperations(_:seed:)``).
    /// The caller removes `work` when done.
    static func prepare(work: String, seed: Int) throws -> Int {
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        return try countOperations(work + "/count", seed: seed)
    }

    /// Runs the workload uninterrupted with counting on, checks it, and
    /// returns how many storage operations it makes.
    static func countOperations(_ dir: String, seed: Int) throws -> Int {
        let counting = try run(dir, seed: seed, environment: ["LODESTONE_IO_COUNT": "1"])
        guard counting.status == 0, counting.acked == ReliabilityWorkload.steps, counting.ioOps > 0 else {
            throw CLIError("the workload did not complete (status \(counting.status), \(counting.acked) acks)")
        }
        if let failure = ReliabilityWorkload.check(directory: dir, seed: seed, acked: counting.acked) {
            throw CLIError("the uninterrupted workload fails its own check: \(failure)")
        }
        return counting.ioOps
    }
}

/// `lodestone-stress reliability-kill`: kills the workload at every storage
/// operation in turn (and, with `--random`, at random moments), reopens, and
/// checks every invariant; prints one JSON summary line.
struct ReliabilityKillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-kill",
        abstract: "Kill the reliability workload at every I/O operation and at random moments; check recovery.")
    @Option(help: "Scratch directory (tmpfs is fastest).") var work: String = "/dev/shm/lodestone-kill"
    @Option var seed: Int = 1
    @Option(help: "Random-moment kills.") var random: Int = 100
    @Option(help: "Stop after this many deterministic kill points (0: all).") var limit: Int = 0
    @Flag(help: "Print each failure as it happens.") var verbose = false

    func run() throws {
        let t0 = now()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let ioOps = try WorkloadChild.prepare(work: work, seed: seed)
        var failures: [String] = []
        var deterministic = 0, survived = 0, torn = 0
        var operations: [String: Int] = [:]
        let points = limit > 0 ? min(limit, ioOps) : ioOps
        for k in 1...points {
            // Every point is killed just before its operation; a write is also
            // killed half written (a torn write).
            for mode in ["before", "torn"] {
                let dir = work + "/k\(k)-\(mode)"
                let o = try WorkloadChild.run(dir, seed: seed,
                                              environment: ["LODESTONE_IO_KILL_AT": String(k), "LODESTONE_IO_KILL_MODE": mode])
                if !o.signaled && o.status != 0 && verbose { FileHandle.standardError.write(Data(o.stderr.utf8)) }
                deterministic += 1
                if mode == "torn" { torn += 1 }
                operations[o.operation.isEmpty ? "none" : o.operation, default: 0] += mode == "before" ? 1 : 0
                if let f = ReliabilityWorkload.check(directory: dir, seed: seed, acked: o.acked) {
                    failures.append("kill at op \(k) (\(mode) \(o.operation)), \(o.acked) acks: \(f)")
                    if verbose { print(failures.last!) }
                } else {
                    survived += 1
                }
                try? FileManager.default.removeItem(atPath: dir)
                if o.operation != "write" { break }
            }
        }
        var randomSurvived = 0
        for r in 0..<random {
            let dir = work + "/r\(r)"
            let o = try WorkloadChild.run(dir, seed: seed, environment: [:],
                                          killAfterAcks: Int.random(in: 0..<ReliabilityWorkload.steps))
            if let f = ReliabilityWorkload.check(directory: dir, seed: seed, acked: o.acked) {
                failures.append("random kill \(r), \(o.acked) acks: \(f)")
                if verbose { print(failures.last!) }
            } else {
                randomSurvived += 1
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
        var line = JSONLine()
        line.set("io_operations", ioOps)
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
