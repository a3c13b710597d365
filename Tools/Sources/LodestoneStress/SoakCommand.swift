import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone-stress reliability-soak`: a steady upsert/update/delete/query/persist
/// workload on a fixed-size live set for a fixed time, sampling resident
/// memory, open files, memory mappings and disk use every second. After a
/// warm-up (the first quarter), resident memory must not grow by 1 MiB per
/// minute or more, and files and mappings must stay flat.
struct ReliabilitySoakCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-soak", abstract: "Run a steady workload and check memory, files and mappings stay flat.")
    @Option var work: String = "/dev/shm/lodestone-soak"
    @Option var seconds: Double = 60
    @Option(help: "Live records.") var records: Int = 20_000
    @Option var dimension: Int = 64

    struct Sample {
        var t: Double
        var rssMiB: Double
        var files: Int
        var mappings: Int
        var diskMiB: Double
    }

    static func sample(_ t: Double, directory: String) -> Sample {
        let statm = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        let pages = Double(statm.split(separator: " ")[1]) ?? 0
        let rss = pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
        let files = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        let maps = ((try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? "").split(separator: "\n").count
        var disk = 0
        if let e = FileManager.default.enumerator(atPath: directory) {
            for case let name as String in e {
                disk += ((try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size]) as? Int) ?? 0
            }
        }
        return Sample(t: t, rssMiB: rss, files: files, mappings: maps, diskMiB: Double(disk) / 1_048_576)
    }

    /// Least-squares slope of y over x.
    static func slope(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(x.count)
        guard n > 1 else { return 0 }
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var num = 0.0, den = 0.0
        for (a, b) in zip(x, y) {
            num += (a - mx) * (b - my)
            den += (a - mx) * (a - mx)
        }
        return den > 0 ? num / den : 0
    }

    func run() throws {
        try? FileManager.default.removeItem(atPath: work)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let db = try Database(path: work)
        let index = try db.createIndex(name: "soak", dimension: dimension, metric: .cosine,
                                       options: IndexOptions(hnsw: HNSWParameters(m: 12, efConstruction: 64),
                                                             durability: .none))
        var rng = SplitMix64(seed: 99)
        func vector() -> [Float] { (0..<dimension).map { _ in Float(rng.next() >> 40) / Float(1 << 24) - 0.5 } }
        func record(_ k: Int) -> Record {
            Record(id: "r\(k)", values: vector(), metadata: ["g": .number(Double(k % 10)), "k": .string("v\(k % 97)")])
        }
        var next = 0
        while next < records {
            try index.upsert((next..<min(records, next + 1_000)).map(record), threads: 2)
            next += 1_000
        }
        try index.persist()
        let filter = try Filter(json: #"{"g": {"$lt": 3}}"#)
        let t0 = now()
        var samples: [Sample] = [Self.sample(0, directory: work)]
        var lastSample = t0, lastPersist = t0
        var ops = 0
        while now() - t0 < seconds {
            // Replace 100 records by new ids (delete old, insert new), update 20, query 50.
            let base = next
            try index.delete(ids: (0..<100).map { "r\(base - records + $0)" })
            try index.upsert((base..<(base + 100)).map(record))
            next += 100
            for i in 0..<20 { try index.update(id: "r\(next - 1 - i)", setMetadata: ["g": .number(Double(i % 10))]) }
            for i in 0..<50 {
                _ = try index.query(vector: vector(), topK: 10, filter: i % 2 == 0 ? filter : nil, includeMetadata: true)
            }
            ops += 220
            if now() - lastPersist > 5 {
                try index.persist()
                lastPersist = now()
            }
            if now() - lastSample >= 1 {
                samples.append(Self.sample(now() - t0, directory: work))
                lastSample = now()
            }
        }
        let steady = samples.filter { $0.t >= seconds / 4 }
        let rssSlope = Self.slope(steady.map { $0.t / 60 }, steady.map(\.rssMiB))
        let files = Set(steady.map(\.files)), maps = steady.map(\.mappings)
        var line = JSONLine()
        line.set("soak_seconds", Int(seconds))
        line.set("soak_ops", ops)
        line.set("soak_ops_per_s", Double(ops) / seconds, digits: 0)
        line.set("soak_rss_start_mib", steady.first?.rssMiB ?? 0, digits: 1)
        line.set("soak_rss_end_mib", steady.last?.rssMiB ?? 0, digits: 1)
        line.set("soak_rss_slope_mib_per_min", rssSlope, digits: 3)
        line.set("soak_open_files", "\(files.min() ?? 0)-\(files.max() ?? 0)")
        line.set("soak_mappings", "\(maps.min() ?? 0)-\(maps.max() ?? 0)")
        line.set("soak_disk_mib_end", steady.last?.diskMiB ?? 0, digits: 1)
        print(line.text)
        let mapsGrow = (maps.last ?? 0) > (maps.first ?? 0) + 8
        if rssSlope >= 1 || (files.max() ?? 0) > (files.min() ?? 0) + 2 || mapsGrow {
            FileHandle.standardError.write(Data("FAIL soak: resident memory, files or mappings grew\n".utf8))
            throw ExitCode.failure
        }
    }
}
