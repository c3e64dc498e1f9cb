import ArgumentParser
import FlowgateCore
import Foundation

@main
struct Flowgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowgate",
        abstract: "Serve and train offline-RL flow policies (QIPO) with energy-model reliability checks.",
        version: flowgateVersion,
        subcommands: [ServeCommand.self, BrokerCommand.self, TrainCommand.self, RefineCommand.self, InspectCommand.self, CalibrateCommand.self, EvalCommand.self, BenchCommand.self, KeygenCommand.self])

    /// ArgumentParser's entry point, except for a `ValidationError` thrown while a subcommand runs
    /// (a file it reads is wrong, say): that prints "Error: " and the message, without the top-level
    /// usage ArgumentParser would add (the flags parsed; the usage says nothing about the problem),
    /// and exits with the usage-error status 64. Parse errors and `validate()` failures keep their
    /// usage, of the subcommand that failed.
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch let error as ValidationError {
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}
