import ArgumentParser

/// `lodestone-stress`: the reliability drivers (kill points, failed
/// operations, hostile files, power cuts, bad input, soak, and the crash
/// workload the tests kill). They live apart from the shipped `lodestone`
/// command, as RocksDB keeps `db_stress` apart from its tools;
/// `Scripts/reliability.sh` runs them and writes the report.
@main
struct StressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lodestone-stress",
        abstract: "Lodestone's reliability drivers (for Scripts/reliability.sh and the crash tests).",
        subcommands: [ReliabilityKillCommand.self, ReliabilityFailCommand.self, ReliabilityHostileCommand.self,
                      ReliabilityPowerCutCommand.self, ReliabilityBadInputCommand.self, ReliabilitySoakCommand.self,
                      ReliabilityWorkloadCommand.self, ReliabilityOpenCheckCommand.self, CrashWorkloadCommand.self]
    )
}
