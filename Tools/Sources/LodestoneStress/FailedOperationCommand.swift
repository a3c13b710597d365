import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone-stress reliability-fail`: makes each storage operation of the
/// workload fail in turn (ENOSPC and EIO alternately), as a full or failing
/// disk would, twice: once with the workload retrying the failed step (as a
/// caller would), once with it giving the step up and going on.
/// - Every failure must surface as a typed error, with nothing half-applied
///   in memory (retrying: the indexes hold the model before or after the step).
/// - Retrying, the retry succeeds or is refused with a typed error, and
///   reopening finds every acknowledged step (the kill-point checks).
/// - Giving up, every later step succeeds, and reopening finds exactly what
///   the indexes held before they were closed: a failed write never comes
///   back from the log, and none after it is lost.
/// Prints one JSON summary line.
struct ReliabilityFailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-fail",
        abstract: "Fail each I/O operation of the reliability workload in turn; check errors, retries and recovery.")
    @Option(help: "Scratch directory (tmpfs is fastest).") var work: String = "/dev/shm/lodestone-fail"
    @Option var seed: Int = 1
    @Option(help: "Stop after this many operations (0: all).") var limit: Int = 0
    @Flag(help: "Print each failure as it happens.") var verbose = false

    func run() throws {
        let t0 = now()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let ioOps = try WorkloadChild.prepare(work: work, seed: seed)
        let points = limit > 0 ? min(limit, ioOps) : ioOps
        var failures: [String] = []
        var recovered = 0, refused = 0, unnoticed = 0, skipped = 0
        var operations: [String: Int] = [:]
        for k in 1...points {
            let dir = work + "/f\(k)"
            let code = k % 2 == 1 ? ENOSPC : EIO
            let environment = ["LODESTONE_IO_FAIL_AT": String(k), "LODESTONE_IO_FAIL_ERRNO": String(code)]
            // Giving the failed step up: the end state must survive reopening.
            let g = try WorkloadChild.run(dir + "-skip", seed: seed, onError: "skip", environment: environment)
            var skipProblem: String? = nil
            if g.signaled {
                skipProblem = "crashed (signal)"
            } else if let bad = g.reports.first(where: { $0.hasPrefix("diverged ") || $0.contains(" untyped ") }) {
                skipProblem = bad
            } else if g.status != 0 {
                skipProblem = "exit status \(g.status): \(g.reports.last ?? "") \(g.stderr.split(separator: "\n").suffix(2).joined(separator: " | "))"
            } else if g.reports.contains(where: { $0.hasPrefix("error ") }) {
                skipped += 1
            }
            if let skipProblem {
                failures.append("fail op \(k) (\(g.operation), errno \(code)), step given up: \(skipProblem)")
                if verbose { print(failures.last!) }
            }
            try? FileManager.default.removeItem(atPath: dir + "-skip")
            // Retrying it.
            let o = try WorkloadChild.run(dir, seed: seed, onError: "retry", environment: environment)
            operations[o.operation.isEmpty ? "none" : o.operation, default: 0] += 1
            let errors = o.reports.filter { $0.hasPrefix("error ") }
            var problem: String? = nil
            if o.signaled {
                problem = "crashed (signal)"
            } else if let bad = o.reports.first(where: { $0.hasPrefix("inconsistent ") }) {
                problem = bad
            } else if let bad = o.reports.first(where: { $0.contains(" untyped ") }) {
                problem = bad
            } else if o.status == 0 {
                // Completed: the error (if the operation's failure surfaced at
                // all: failing to delete an old file is not an error) healed on retry.
                if errors.isEmpty { unnoticed += 1 } else { recovered += 1 }
            } else if o.status == 3 {
                refused += 1
            } else {
                problem = "exit status \(o.status): \(o.stderr.split(separator: "\n").suffix(3).joined(separator: " | "))"
            }
            if problem == nil, let f = ReliabilityWorkload.check(directory: dir, seed: seed, acked: o.acked) {
                problem = "after reopening: \(f)"
            }
            if let problem {
                failures.append("fail op \(k) (\(o.operation), errno \(code)), retried, \(o.acked) acks: \(problem)")
                if verbose { print(failures.last!) }
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
        var line = JSONLine()
        line.set("io_operations", ioOps)
        line.set("failed_operations", points)
        line.set("failed_operation_kinds", operations.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: " "))
        line.set("failed_recovered_by_retry", recovered)
        line.set("failed_refused_typed", refused)
        line.set("failed_not_surfaced", unnoticed)
        line.set("failed_given_up_then_reopened", skipped)
        line.set("failed_operation_violations", failures.count)
        line.set("seconds", now() - t0, digits: 1)
        print(line.text)
        for f in failures.prefix(20) { FileHandle.standardError.write(Data("FAIL \(f)\n".utf8)) }
        if !failures.isEmpty { throw ExitCode.failure }
    }
}
