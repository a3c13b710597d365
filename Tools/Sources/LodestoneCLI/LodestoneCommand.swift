import ArgumentParser
@_spi(LodestoneTools) import Lodestone

/// The `lodestone` command: the command-line face of the library.
@main
struct LodestoneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lodestone",
        abstract: "Lodestone: an embedded nearest-neighbour vector index engine.",
        version: LodestoneVersion.string,
        subcommands: [CreateCommand.self, ListCommand.self, DescribeCommand.self, DropCommand.self, UpsertCommand.self,
                      QueryCommand.self, FetchCommand.self, DeleteCommand.self, StatsCommand.self, PersistCommand.self,
                      ExportCommand.self, ImportCommand.self, InspectCommand.self, VerifyCommand.self,
                      DemoCommand.self, BenchCommand.self, KernelBenchCommand.self, OpenBenchCommand.self,
                      InfoCommand.self, ServeCommand.self, KnnCommand.self, JSONBenchCommand.self,
                      SparseBenchCommand.self]
    )
}

/// `lodestone info`: what this machine gives Lodestone.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show the distance kernels and BLAS this process uses.")

    func run() throws {
        print("kernels: \(DistanceKernels.active.isa.rawValue) (available: \(DistanceKernels.available.map(\.rawValue).joined(separator: ", ")))")
        print("neighbour-code kernels (quantized walk): \(DistanceKernels.neighbourCodeISA.rawValue)")
        print("openblas core: \(BLAS.coreName), threads: \(BLAS.threadCount)")
    }
}

