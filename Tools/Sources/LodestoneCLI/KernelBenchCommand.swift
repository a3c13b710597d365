import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone bench-kernels`: distance-kernel throughput on cache-resident data.
struct KernelBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Measure distance-kernel throughput (GB/s of vector data) for every instruction set this CPU runs.")

    @Option(help: "Vector dimension.") var dim: Int = 384
    @Option(help: "Rows in the working set (keep it cache-resident: 64 rows x 384 floats = 96 KiB).") var rows: Int = 64
    @Option(help: "Seconds per measurement.") var seconds: Double = 0.5
    @Flag(help: "Print JSON lines.") var json = false

    func run() throws {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<(rows * dim)).map { _ in Float.random(in: -1...1, using: &rng) }
        let query = (0..<dim).map { _ in Float.random(in: -1...1, using: &rng) }
        let rowVectors = (0..<rows).map { Array(data[($0 * dim)..<(($0 + 1) * dim)]) }
        var portableRate: [String: Double] = [:]
        for isa in DistanceKernels.available {
            guard let kernels = DistanceKernels(isa: isa) else { continue }
            for kernel in ["dot", "l2sq", "dot_rows"] {
                var sink: Float = 0
                var passes = 0
                let start = now()
                var elapsed = 0.0
                while elapsed < seconds {
                    for _ in 0..<64 {
                        switch kernel {
                        case "dot": for r in rowVectors { sink += kernels.dot(query, r) }
                        case "l2sq": for r in rowVectors { sink += kernels.l2Squared(query, r) }
                        default: sink += kernels.dotRows(query, data)[0]
                        }
                    }
                    passes += 64
                    elapsed = now() - start
                }
                let gbps = Double(passes) * Double(rows * dim * 4) / elapsed / 1e9
                let nsPerVector = elapsed / Double(passes * rows) * 1e9
                if isa == .portable { portableRate[kernel] = gbps }
                var line = JSONLine()
                line.set("isa", isa.rawValue)
                line.set("kernel", kernel)
                line.set("dim", dim)
                line.set("rows", rows)
                line.set("gbps", gbps, digits: 2)
                line.set("ns_per_vector", nsPerVector, digits: 2)
                line.set("vs_portable", portableRate[kernel].map { gbps / $0 } ?? .nan, digits: 2)
                line.set("active", isa == DistanceKernels.active.isa)
                if sink.isNaN { line.set("sink", Double(sink)) }
                if json {
                    print(line.text)
                } else {
                    print(String(format: "%-8@ %-9@ d=%d: %6.2f GB/s, %6.2f ns/vector%@", isa.rawValue, kernel, dim,
                                 gbps, nsPerVector,
                                 portableRate[kernel].map { String(format: ", %.2fx portable", gbps / $0) } ?? ""))
                }
            }
        }
    }
}
