import ArgumentParser
import FlowgateCore

@main
struct Flowgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowgate",
        abstract: "Serve and train offline-RL flow policies (QIPO) with energy-model reliability checks.",
        version: flowgateVersion,
        subcommands: [ServeCommand.self, BrokerCommand.self, TrainCommand.self, RefineCommand.self, InspectCommand.self, CalibrateCommand.self, EvalCommand.self, BenchCommand.self, KeygenCommand.self])
}
