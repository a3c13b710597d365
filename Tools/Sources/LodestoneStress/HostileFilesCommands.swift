import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// Hostile files: thousands of damaged copies of a small golden index's
/// files, each opened and queried in a child process. Every outcome must be
/// a typed error naming the file and section, or answers identical to the
/// golden index's (the damage hit slack bytes); a crash, a hang, a memory
/// blow-up or a silently different answer fails the run.
enum HostileFiles {
    /// One damaged file: which index's file, and how it is damaged.
    struct Mutation: CustomStringConvertible {
        var index: String      // "flat" or "graph"
        var file: String       // "segment", "delta" or "manifest"
        var kind: String       // flip, zero-page, truncate, set32, set64, swap, append
        var a: Int
        var b: Int

        var description: String { "\(index) \(file) \(kind) \(a) \(b)" }

        init(_ index: String, _ file: String, _ kind: String, _ a: Int, _ b: Int = 0) {
            self.index = index
            self.file = file
            self.kind = kind
            self.a = a
            self.b = b
        }

        init?(line: Substring) {
            let f = line.split(separator: " ")
            guard f.count == 5, let a = Int(f[3]), let b = Int(f[4]) else { return nil }
            self.init(String(f[0]), String(f[1]), String(f[2]), a, b)
        }

        /// `bytes` damaged.
        func apply(_ bytes: [UInt8], sections: [(offset: Int, length: Int)]) -> [UInt8] {
            var out = bytes
            func put(_ value: UInt64, at offset: Int, width: Int) {
                for i in 0..<width where offset + i < out.count { out[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
            }
            switch kind {
            case "flip": if a < out.count { out[a] ^= UInt8(1 << (b & 7)) }
            case "zero-page":
                let start = a * 4096
                if start < out.count { for i in start..<min(out.count, start + 4096) { out[i] = 0 } }
            case "truncate": out = Array(out.prefix(a))
            case "set32": put(UInt64(UInt32(truncatingIfNeeded: b)), at: a, width: 4)
            case "set64": put(UInt64(bitPattern: Int64(b)), at: a, width: 8)
            case "swap":
                guard a < sections.count, b < sections.count else { break }
                let x = sections[a], y = sections[b]
                let n = min(x.length, y.length)
                guard n > 0 else { break }
                let first = Array(out[x.offset..<(x.offset + n)])
                out.replaceSubrange(x.offset..<(x.offset + n), with: out[y.offset..<(y.offset + n)])
                out.replaceSubrange(y.offset..<(y.offset + n), with: first)
            case "append": out += (0..<a).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ b) }
            default: break
            }
            return out
        }
    }

    /// What a reader must see: every record and some query answers.
    struct Answers: Equatable {
        var records: [String: [Float]] = [:]
        var metadata: [String: String] = [:]
        var queries: [[String]] = []
        var scores: [[Float]] = []
    }

    /// A golden index's files: its segment, its delta (if any) and their
    /// section spans.
    struct GoldenFiles {
        var segmentName: String
        var segment: [UInt8]
        var sections: [(offset: Int, length: Int)]
        var deltaName: String?
        var delta: [UInt8]
        var deltaSections: [(offset: Int, length: Int)]
        var manifest: [UInt8]

        init(directory dir: String) throws {
            let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            segmentName = names.first { $0.hasPrefix("segment-") }!
            deltaName = names.first { $0.hasPrefix("delta-") }
            func read(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))) }
            func spans(_ name: String) throws -> [(offset: Int, length: Int)] {
                try SegmentInfo(path: dir + "/" + name).sections.map { ($0.offset, $0.storedBytes) }
            }
            segment = try read(segmentName)
            sections = try spans(segmentName)
            delta = try deltaName.map(read) ?? []
            deltaSections = try deltaName.map(spans) ?? []
            manifest = try read("MANIFEST")
        }
    }

    static func answers(_ index: Index) throws -> Answers {
        var out = Answers()
        let state = try ReliabilityWorkload.records(of: index)
        for (id, r) in state {
            out.records[id] = r.values
            out.metadata[id] = metadataJSON(r.metadata)
        }
        for qi in 0..<5 {
            let m = try index.query(vector: ReliabilityWorkload.vector(7_000, qi, 0), topK: 5, includeValues: true).matches
            out.queries.append(m.map(\.id))
            out.scores.append(m.map(\.score))
        }
        return out
    }

    /// The mutations run for `golden` (segment sizes and section spans per
    /// index): ~`count` in all, plus every-byte truncation of the flat
    /// segment when `exhaustive`.
    static func plan(count: Int, exhaustive: Bool, files: [String: GoldenSizes], seed: UInt64) -> [Mutation] {
        var rng = SplitMix64(seed: seed)
        var out: [Mutation] = []
        let per = count / max(files.count, 1)
        for (index, f) in files.sorted(by: { $0.key < $1.key }) {
            let size = f.segment
            // Header fields: format version, byte-order mark, header length,
            // kind, directory offset, entry count, model length; odd values.
            for (offset, width) in [(8, 4), (12, 4), (16, 4), (20, 4), (32, 8), (40, 4), (48, 4)] {
                for v in [0, 1, -1, Int(Int32.max), size, size * 2] {
                    out.append(Mutation(index, "segment", width == 4 ? "set32" : "set64", offset, v))
                }
            }
            for p in 0..<((size + 4095) / 4096) { out.append(Mutation(index, "segment", "zero-page", p)) }
            for x in 0..<f.sections { for y in (x + 1)..<f.sections { out.append(Mutation(index, "segment", "swap", x, y)) } }
            for n in [1, 100, 4096] { out.append(Mutation(index, "segment", "append", n, 7)) }
            for _ in 0..<(per / 10) { out.append(Mutation(index, "segment", "truncate", Int(rng.next() % UInt64(size)))) }
            for _ in 0..<(per / 20) {
                out.append(Mutation(index, "manifest", "flip", Int(rng.next() % UInt64(f.manifest)), Int(rng.next() % 8)))
            }
            // The delta: its header fields, every page, truncations, flips.
            let delta = f.delta
            if delta > 0 {
                for (offset, width) in [(8, 4), (12, 4), (16, 4), (20, 4), (32, 8), (40, 4), (48, 4)] {
                    for v in [0, 1, -1, Int(Int32.max), delta, delta * 2] {
                        out.append(Mutation(index, "delta", width == 4 ? "set32" : "set64", offset, v))
                    }
                }
                for p in 0..<((delta + 4095) / 4096) { out.append(Mutation(index, "delta", "zero-page", p)) }
                for x in 0..<f.deltaSections { for y in (x + 1)..<f.deltaSections { out.append(Mutation(index, "delta", "swap", x, y)) } }
                for n in [1, 4096] { out.append(Mutation(index, "delta", "append", n, 7)) }
                for _ in 0..<(per / 20) { out.append(Mutation(index, "delta", "truncate", Int(rng.next() % UInt64(delta)))) }
                for _ in 0..<(per / 10) {
                    out.append(Mutation(index, "delta", "flip", Int(rng.next() % UInt64(delta)), Int(rng.next() % 8)))
                }
            }
            while out.count < per * (out.first?.index == index ? 1 : 2) {
                out.append(Mutation(index, "segment", "flip", Int(rng.next() % UInt64(size)), Int(rng.next() % 8)))
            }
        }
        if exhaustive, let f = files["flat"] {
            for n in 0..<f.segment { out.append(Mutation("flat", "segment", "truncate", n)) }
        }
        if exhaustive {
            for (index, f) in files.sorted(by: { $0.key < $1.key }) {
                for n in 0..<f.delta { out.append(Mutation(index, "delta", "truncate", n)) }
            }
        }
        return out
    }

    /// The golden files' sizes: segment, delta (0 when none) and manifest
    /// bytes, and the two segment files' section counts.
    struct GoldenSizes {
        var segment: Int
        var sections: Int
        var delta: Int
        var deltaSections: Int
        var manifest: Int
    }

    /// A small change over a freshly merged index, persisted (records
    /// added, one deleted, one's metadata changed): as a delta on the graph
    /// index, so the cases damage a delta as well as the segment under it
    /// (a flat index always writes a whole segment).
    static func addDelta(to index: Index) throws {
        let existing = try ReliabilityWorkload.records(of: index).keys.sorted()
        try index.upsert((0..<3).map { i in
            Record(id: "hostile-delta-\(i)", values: ReliabilityWorkload.vector(9_000, i, 0), metadata: ["delta": .number(Double(i))])
        })
        if let first = existing.first { try index.delete(ids: [first]) }
        if existing.count > 1 { try index.update(id: existing[1], setMetadata: ["delta": "changed"]) }
        try index.persist()
    }

}

/// `lodestone-stress reliability-open-check`: the child that opens damaged files.
struct ReliabilityOpenCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-open-check", abstract: "Open damaged copies of a golden index (a child of reliability-hostile).")
    @Option var golden: String
    @Option var plan: String
    @Option var scratch: String
    @Option var from: Int = 0

    func run() throws {
        let db = try Database(path: golden)
        var goldenAnswers: [String: HostileFiles.Answers] = [:]
        var files: [String: HostileFiles.GoldenFiles] = [:]
        for name in ReliabilityWorkload.indexes {
            goldenAnswers[name] = try HostileFiles.answers(try db.index(name))
            files[name] = try HostileFiles.GoldenFiles(directory: golden + "/" + name)
        }
        let lines = try String(contentsOfFile: plan, encoding: .utf8).split(separator: "\n")
        let out = FileHandle.standardOutput
        for n in from..<lines.count {
            guard let m = HostileFiles.Mutation(line: lines[n]), let f = files[m.index] else { continue }
            out.write(Data("begin \(n)\n".utf8))
            let dir = scratch + "/" + m.index
            try? FileManager.default.removeItem(atPath: scratch)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let segment = m.file == "segment" ? m.apply(f.segment, sections: f.sections) : f.segment
            let manifest = m.file == "manifest" ? m.apply(f.manifest, sections: []) : f.manifest
            try Data(segment).write(to: URL(fileURLWithPath: dir + "/" + f.segmentName))
            if let deltaName = f.deltaName {
                let delta = m.file == "delta" ? m.apply(f.delta, sections: f.deltaSections) : f.delta
                try Data(delta).write(to: URL(fileURLWithPath: dir + "/" + deltaName))
            }
            try Data(manifest).write(to: URL(fileURLWithPath: dir + "/MANIFEST"))
            let outcome: String
            do {
                let index = try Database(path: scratch).index(m.index)
                let got = try HostileFiles.answers(index)
                outcome = got == goldenAnswers[m.index]! ? "identical" : "diverged"
            } catch let error as LodestoneError {
                switch error {
                case let .corruptSegment(path, section, _):
                    outcome = path.isEmpty || section.isEmpty ? "untyped \(error)" : "typed \(section)"
                case .unsupportedFormatVersion: outcome = "typed version"
                case .indexNotFound: outcome = "typed manifest-missing"
                default: outcome = "typed-other \(error)"
                }
            }
            out.write(Data("result \(n) \(outcome)\n".utf8))
        }
    }
}

/// `lodestone-stress reliability-hostile`: builds the golden index, plans the
/// damaged files, runs the open-check child over them (restarting it after
/// a crash or a hang), and prints one JSON summary line.
struct ReliabilityHostileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-hostile",
        abstract: "Open thousands of damaged index files in a child process; every outcome must be typed or identical.")
    @Option var work: String = "/dev/shm/lodestone-hostile"
    @Option(help: "Damaged files besides the exhaustive truncation.") var count: Int = 5_000
    @Flag(inversion: .prefixedNo, help: "Also truncate the flat segment at every byte.") var exhaustive = true
    @Option(help: "Seconds without progress before a case counts as a hang.") var timeout: Double = 10
    @Flag var verbose = false

    func run() throws {
        let t0 = now()
        try? FileManager.default.removeItem(atPath: work)
        let golden = work + "/golden"
        try FileManager.default.createDirectory(atPath: golden, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        // The golden index: the reliability workload, persisted.
        let built = try WorkloadChild.run(golden, seed: 3, environment: [:])
        guard built.status == 0 else { throw CLIError("the golden workload failed: \(built.stderr)") }
        var files: [String: HostileFiles.GoldenSizes] = [:]
        do {
            let db = try Database(path: golden)
            for name in ReliabilityWorkload.indexes {
                // One whole segment, then a small change over it (the graph
                // index's as a delta): the cases damage the segment, the
                // delta and the manifest.
                try db.index(name).persist(merge: true)
                try HostileFiles.addDelta(to: db.index(name))
                let f = try HostileFiles.GoldenFiles(directory: golden + "/" + name)
                guard name == "flat" || f.deltaName != nil else {
                    throw CLIError("\(name): the small change was not persisted as a delta")
                }
                files[name] = HostileFiles.GoldenSizes(segment: f.segment.count, sections: f.sections.count,
                                                       delta: f.delta.count, deltaSections: f.deltaSections.count,
                                                       manifest: f.manifest.count)
            }
        }
        let plan = HostileFiles.plan(count: count, exhaustive: exhaustive, files: files, seed: 11)
        let planPath = work + "/plan.txt"
        try plan.map(\.description).joined(separator: "\n").write(toFile: planPath, atomically: true, encoding: .utf8)
        var outcomes: [String: Int] = [:]
        var crashes = 0, hangs = 0, divergences = 0, untyped = 0
        var failures: [String] = []
        var next = 0
        while next < plan.count {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            p.arguments = ["reliability-open-check", "--golden", golden, "--plan", planPath, "--scratch", work + "/case",
                           "--from", String(next)]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let fd = out.fileHandleForReading.fileDescriptor
            var pending = Data()
            var current = next
            var lastProgress = now()
            var hung = false
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            reading: while true {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, 200)
                if ready > 0 {
                    let n = read(fd, &buffer, buffer.count)
                    if n <= 0 { break reading }
                    pending.append(contentsOf: buffer[0..<n])
                    while let newline = pending.firstIndex(of: 10) {
                        let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending.removeSubrange(pending.startIndex...newline)
                        let f = line.split(separator: " ", maxSplits: 2)
                        guard f.count >= 2, let n = Int(f[1]) else { continue }
                        if f[0] == "begin" { current = n; lastProgress = now(); continue }
                        let outcome = f.count > 2 ? String(f[2]) : ""
                        let kind = String(outcome.split(separator: " ").first ?? "")
                        outcomes[kind == "typed" ? outcome : kind, default: 0] += 1
                        if kind == "diverged" {
                            divergences += 1
                            failures.append("\(plan[n]): opened and answered differently")
                        } else if kind == "untyped" || kind == "typed-other" {
                            untyped += 1
                            failures.append("\(plan[n]): \(outcome)")
                        }
                        next = n + 1
                        lastProgress = now()
                    }
                } else if now() - lastProgress > timeout {
                    hung = true
                    kill(p.processIdentifier, SIGKILL)
                    break reading
                }
            }
            p.waitUntilExit()
            if hung {
                hangs += 1
                failures.append("\(plan[current]): no answer within \(timeout) s")
                next = current + 1
            } else if p.terminationReason == .uncaughtSignal || p.terminationStatus != 0 {
                if next <= current {
                    crashes += 1
                    failures.append("\(plan[current]): the reader died (status \(p.terminationStatus))")
                    next = current + 1
                } else if next < plan.count {
                    crashes += 1
                    failures.append("\(plan[next]): the reader died before it began (status \(p.terminationStatus))")
                    next += 1
                }
            }
            if verbose { for f in failures { print(f) } }
        }
        let truncations = exhaustive ? files["flat"]!.segment + files.values.map(\.delta).reduce(0, +) : 0
        var line = JSONLine()
        line.set("hostile_files", plan.count - truncations)
        line.set("hostile_truncations_exhaustive", truncations)
        line.set("hostile_typed", outcomes.filter { $0.key.hasPrefix("typed") }.values.reduce(0, +))
        line.set("hostile_identical", outcomes["identical", default: 0])
        line.set("hostile_crashes", crashes)
        line.set("hostile_hangs", hangs)
        line.set("hostile_silent_divergences", divergences)
        line.set("hostile_untyped_errors", untyped)
        line.set("hostile_sections_named", outcomes.keys.filter { $0.hasPrefix("typed ") }.sorted()
            .map { "\($0.dropFirst(6)):\(outcomes[$0]!)" }.joined(separator: " "))
        line.set("seconds", now() - t0, digits: 1)
        print(line.text)
        for f in failures.prefix(20) { FileHandle.standardError.write(Data("FAIL \(f)\n".utf8)) }
        if !failures.isEmpty { throw ExitCode.failure }
    }
}
