import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone

/// The operations of the crash workload: op `i` of run `seed`. The crash
/// test regenerates the same sequence to know what each acknowledged op did.
enum CrashWorkload {
    static let dimension = 8

    enum Op: Equatable {
        case upsert(key: UInt64, vector: [Float])
        case remove(key: UInt64)
        case persist
    }

    static func op(seed: Int, _ i: Int) -> Op {
        if i % 10 == 9 { return .persist }
        let key = UInt64((seed * 7919 + i * 104_729) % 300)
        if i % 4 == 3 { return .remove(key: key) }
        return .upsert(key: key, vector: (0..<dimension).map { j in Float((seed * 13 + i * 31 + j * 17) % 97) / 10 + 0.1 })
    }
}

/// `lodestone-stress crash-workload`: upserts, removes and persists in a loop on a
/// durable index, printing `ack N` after each operation returns. The crash
/// test kills it with SIGKILL at random moments and checks what survived.
struct CrashWorkloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash-workload", abstract: "Write to a durable index in a loop (for crash tests).")

    @Option var dir: String
    @Option var seed: Int = 0
    @Option var ops: Int = 1000
    @Option(help: "synchronous, groupCommit or none.") var durability: String = "synchronous"
    @Option(help: "Make writes past this many bytes of any file fail (EFBIG), like a full disk.")
    var fileSizeLimit: Int?

    func run() throws {
        if let limit = fileSizeLimit {
            signal(SIGXFSZ, SIG_IGN)
            var rl = rlimit(rlim_cur: rlim_t(limit), rlim_max: rlim_t(limit))
            setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &rl)
        }
        guard let mode = Durability(rawValue: durability) else {
            throw ValidationError("--durability: synchronous, groupCommit or none")
        }
        let index: DurableIndex
        if FileManager.default.fileExists(atPath: dir + "/MANIFEST") {
            index = try DurableIndex.open(directory: dir, durability: mode)
        } else {
            index = try DurableIndex.create(directory: dir, dimension: CrashWorkload.dimension, metric: .euclidean,
                                            parameters: HNSWParameters(m: 8, efConstruction: 32), durability: mode)
        }
        for i in 0..<ops {
            switch CrashWorkload.op(seed: seed, i) {
            case let .upsert(key, vector): try index.upsert(vector, keys: [key])
            case let .remove(key): try index.remove(keys: [key])
            case .persist: try index.persist()
            }
            // One write(2) per acknowledgement, unbuffered: a kill right
            // after it cannot lose the line.
            FileHandle.standardOutput.write(Data("ack \(i)\n".utf8))
        }
    }
}
