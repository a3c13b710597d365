import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// A simulated disk for power cuts (after SQLite's test6 and LevelDB's
/// FaultInjectionTestEnv): it replays a ``StorageIO`` journal, keeping for
/// every file its durable bytes (as of its last fsync) and the writes since,
/// and for every directory its durable entries (as of its last fsync) and
/// the creates, renames and unlinks since. A cut then decides what survived.
final class SimulatedDisk {
    enum Pending {
        case write(offset: Int, bytes: [UInt8])
        case truncate(length: Int)
    }

    struct File {
        var durable: [UInt8] = []
        var current: [UInt8] = []
        var pending: [Pending] = []
    }

    enum DirectoryChange {
        case add(String, Int)
        case remove(String)
        case rename(String, String, Int)
    }

    struct Directory {
        var durable: [String: Int] = [:]
        var current: [String: Int] = [:]
        var pending: [DirectoryChange] = []
    }

    /// Inodes: files, and directories (by path: directories are never renamed here).
    private var files: [Int: File] = [:]
    private var directories: [String: Directory] = [:]
    private var directoryInode: [Int: String] = [:]
    private var nextInode = 1
    let root: String

    init(root: String) {
        self.root = root
        directories[root] = Directory()
    }

    private func split(_ path: String) -> (String, String) {
        let slash = path.lastIndex(of: "/")!
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    private func inode(_ path: String) -> Int? {
        let (dir, name) = split(path)
        return directories[dir]?.current[name]
    }

    private static func apply(_ p: Pending, to bytes: inout [UInt8]) {
        switch p {
        case let .write(offset, data):
            if bytes.count < offset + data.count { bytes += [UInt8](repeating: 0, count: offset + data.count - bytes.count) }
            bytes.replaceSubrange(offset..<(offset + data.count), with: data)
        case let .truncate(length):
            if bytes.count > length { bytes.removeLast(bytes.count - length) } else {
                bytes += [UInt8](repeating: 0, count: length - bytes.count)
            }
        }
    }

    /// Applies one journaled operation.
    func replay(_ e: StorageIO.JournalEntry) {
        switch e.operation {
        case .mkdir:
            let (parent, name) = split(e.path)
            let id = nextInode
            nextInode += 1
            directories[e.path] = Directory()
            directoryInode[id] = e.path
            directories[parent]?.current[name] = id
            directories[parent]?.pending.append(.add(name, id))
        case .create:
            let (parent, name) = split(e.path)
            let id = nextInode
            nextInode += 1
            files[id] = File()
            directories[parent]?.current[name] = id
            directories[parent]?.pending.append(.add(name, id))
        case .write:
            guard let id = inode(e.path) else { return }
            let p = Pending.write(offset: e.offset, bytes: e.bytes)
            SimulatedDisk.apply(p, to: &files[id]!.current)
            files[id]!.pending.append(p)
        case .truncate:
            guard let id = inode(e.path) else { return }
            let p = Pending.truncate(length: e.offset)
            SimulatedDisk.apply(p, to: &files[id]!.current)
            files[id]!.pending.append(p)
        case .fsync, .fdatasync:
            guard let id = inode(e.path), files[id] != nil else { return }
            files[id]!.durable = files[id]!.current
            files[id]!.pending = []
        case .fsyncDirectory:
            guard directories[e.path] != nil else { return }
            directories[e.path]!.durable = directories[e.path]!.current
            directories[e.path]!.pending = []
        case .rename:
            let (fromDir, from) = split(e.path), (toDir, to) = split(e.other)
            guard fromDir == toDir, let id = directories[fromDir]?.current[from] else { return }
            directories[fromDir]!.current[from] = nil
            directories[fromDir]!.current[to] = id
            directories[fromDir]!.pending.append(.rename(from, to, id))
        case .unlink:
            let (dir, name) = split(e.path)
            guard directories[dir]?.current[name] != nil else { return }
            directories[dir]!.current[name] = nil
            directories[dir]!.pending.append(.remove(name))
        case .mark:
            break
        }
    }

    /// How unsynced data fares at the cut.
    enum Model: String, CaseIterable {
        /// Everything written reached the disk.
        case applyAll = "apply-all"
        /// Nothing since the last fsync did.
        case dropAll = "drop-all"
        /// Each unsynced write is applied, dropped or garbled (its own bytes
        /// only: "powersafe overwrite"); each directory keeps a random prefix
        /// of its unsynced changes.
        case random
        /// As `random`, but a garbled write garbles every 512-byte sector it
        /// touches (neighbouring bytes included), as disks without powersafe
        /// overwrite may.
        case sector
    }

    /// Writes what survives a cut under `model` into `target`.
    func materialize(into target: String, model: Model, rng: inout SplitMix64) throws {
        func coin(_ n: UInt64) -> UInt64 { rng.next() % n }
        var contents: [Int: [UInt8]] = [:]
        for (id, f) in files {
            var bytes = f.durable
            for p in f.pending {
                switch model {
                case .applyAll: SimulatedDisk.apply(p, to: &bytes)
                case .dropAll: break
                case .random, .sector:
                    switch coin(3) {
                    case 0: SimulatedDisk.apply(p, to: &bytes)
                    case 1: break
                    default:
                        guard case let .write(offset, data) = p else { SimulatedDisk.apply(p, to: &bytes); break }
                        var start = offset, end = offset + data.count
                        if model == .sector { start = start / 512 * 512; end = (end + 511) / 512 * 512 }
                        let garbage = (start..<end).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                        SimulatedDisk.apply(.write(offset: start, bytes: garbage), to: &bytes)
                    }
                }
            }
            contents[id] = bytes
        }
        func entries(_ dir: Directory) -> [String: Int] {
            var names = dir.durable
            let kept: Int
            switch model {
            case .applyAll: kept = dir.pending.count
            case .dropAll: kept = 0
            case .random, .sector: kept = Int(coin(UInt64(dir.pending.count + 1)))
            }
            for change in dir.pending.prefix(kept) {
                switch change {
                case let .add(name, id): names[name] = id
                case let .remove(name): names[name] = nil
                case let .rename(from, to, id):
                    names[from] = nil
                    names[to] = id
                }
            }
            return names
        }
        func write(_ dirPath: String, _ out: String) throws {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            guard let dir = directories[dirPath] else { return }
            for (name, id) in entries(dir) {
                if let sub = directoryInode[id] {
                    try write(sub, out + "/" + name)
                } else if let bytes = contents[id] {
                    try Data(bytes).write(to: URL(fileURLWithPath: out + "/" + name))
                }
            }
        }
        try write(root, target)
    }
}

/// `lodestone-stress reliability-power`: journals one run of the reliability
/// workload, then cuts the power after every operation under each model and
/// checks the recovered state against the model of acknowledged steps.
struct ReliabilityPowerCutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-power", abstract: "Simulate power cuts after every storage operation; check recovery.")
    @Option var work: String = "/dev/shm/lodestone-power"
    @Option var seed: Int = 1
    @Option(help: "Random draws per cut point for the random and sector models.") var draws: Int = 2
    @Flag var verbose = false

    func run() throws {
        let t0 = now()
        try? FileManager.default.removeItem(atPath: work)
        let root = work + "/run"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        StorageIO.startJournal()
        try ReliabilityWorkload.run(directory: root, seed: seed) { i in StorageIO.mark("ack \(i)") }
        let journal = StorageIO.stopJournal()
        var cuts: [SimulatedDisk.Model: Int] = [:], violations: [SimulatedDisk.Model: Int] = [:]
        var failures: [String] = []
        var rng = SplitMix64(seed: UInt64(seed) &* 7_919)
        var acked = 0
        let disk = SimulatedDisk(root: root)
        var n = 0
        for k in 0...journal.count {
            if k > 0 {
                let e = journal[k - 1]
                disk.replay(e)
                if e.operation == .mark { acked += 1; continue }
            }
            for model in SimulatedDisk.Model.allCases {
                for draw in 0..<((model == .random || model == .sector) ? draws : 1) {
                    let image = work + "/img-\(n % 2)"
                    n += 1
                    try? FileManager.default.removeItem(atPath: image)
                    try disk.materialize(into: image, model: model, rng: &rng)
                    cuts[model, default: 0] += 1
                    if let f = ReliabilityWorkload.check(directory: image, seed: seed, acked: acked) {
                        violations[model, default: 0] += 1
                        let op = k > 0 ? "\(journal[k - 1].operation.rawValue) \(journal[k - 1].path.replacingOccurrences(of: root, with: ""))" : "start"
                        failures.append("\(model.rawValue) cut after entry \(k) (\(op)), draw \(draw), \(acked) acks: \(f)")
                        if verbose { print(failures.last!) }
                    }
                }
            }
        }
        let powersafe = SimulatedDisk.Model.allCases  // the sector model too: the log pads records to sectors
        var line = JSONLine()
        line.set("journal_entries", journal.count)
        line.set("power_cuts", powersafe.reduce(0) { $0 + cuts[$1, default: 0] })
        line.set("power_cut_violations", powersafe.reduce(0) { $0 + violations[$1, default: 0] })
        for model in SimulatedDisk.Model.allCases {
            line.set("cuts_\(model.rawValue)", cuts[model, default: 0])
            line.set("violations_\(model.rawValue)", violations[model, default: 0])
        }
        line.set("seconds", now() - t0, digits: 1)
        print(line.text)
        for f in failures.prefix(20) { FileHandle.standardError.write(Data("FAIL \(f)\n".utf8)) }
        if powersafe.contains(where: { violations[$0, default: 0] > 0 }) { throw ExitCode.failure }
    }
}
