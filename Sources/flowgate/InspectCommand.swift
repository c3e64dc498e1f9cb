import ArgumentParser
import FlowgateAlgorithms
import FlowgateCore
import Foundation
import FlowgateModelFormat

/// `flowgate inspect PATH`: validates and describes a model directory or a single safetensors file.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Validate and describe a model directory or a .safetensors file.",
        discussion: """
            For a model directory: prints the manifest summary and a table of networks and their MLPs, \
            then "OK: all N files valid". For a .safetensors file: lists its tensors (name, dtype, shape, \
            min/max/mean); --values dumps metadata and values as JSON (shortest round-trip floats; \
            non-finite values as NaN/Infinity/-Infinity like Python's json module). \
            On an invalid file prints one line naming the file and the problem to stderr and exits 1.
            """)

    @Argument(help: "A model directory or a .safetensors file.")
    var path: String

    @Flag(help: "Print a machine-readable JSON summary.")
    var json = false

    @Flag(help: "With a .safetensors file: dump metadata and all tensor values as JSON.")
    var values = false

    func run() throws {
        do {
            let url = URL(fileURLWithPath: path)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
                throw ModelFileError(path: path, .missingFile)
            }
            if isDirectory.boolValue {
                guard !values else { throw ValidationError("--values applies to a .safetensors file, not a model directory") }
                // The same validation `flowgate serve` runs: files, tensors, and the networks built
                // against the manifest's dimensions.
                let model = try ModelDirectory.load(at: url)
                _ = try PolicyBundle(model: model, checkerFactory: EnergyTransitionModel.checkerFactory)
                print(json ? try InspectFormat.json(model.summary()) : InspectFormat.text(model.summary()))
            } else {
                let file = try Safetensors.read(contentsOf: url)
                if values {
                    print(InspectFormat.valuesJSON(file))
                } else {
                    print(json ? InspectFormat.tensorsJSON(file, path: path) : InspectFormat.tensorsText(file, path: path))
                }
            }
        } catch let error as ValidationError {
            throw error
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))  // as ArgumentParser writes its own
            throw ExitCode.failure
        }
    }
}
