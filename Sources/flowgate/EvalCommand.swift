import ArgumentParser
import FlowgateAlgorithms
import FlowgateEval
import FlowgateModelFormat
import FlowgateServer
import Foundation
import Logging

/// `flowgate eval MODEL_DIR`: is this model good? Serves it in-process and drives real pybullet
/// episodes through the Python runner (flowgate_client.evaluate / simulate).
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a model in real pybullet episodes, every action served over the socket.",
        discussion: """
            Serves MODEL_DIR in this process on a free loopback port and runs the Python runner \
            (python -m flowgate_client.evaluate) against it. Prints per K: normalised score mean ± std \
            (100 = the bundled pybullet expert, 0 = uniform random), falls (episodes terminated before \
            the time limit), the share of steps flagged unreliable, client latency p50 / p99, and the \
            training dataset's average score when its file is found (the provenance's path, or data/NAME). \
            The env comes from --env, else from the dataset named in the model's provenance \
            (hopper-medium.npz → HopperBulletEnv). Python: --python, then FLOWGATE_PYTHON, then .venv/bin/python \
            of the repository the binary was built in or of the current directory; it needs pybullet \
            (clients/python/requirements.txt). The runner is that repository's clients/python.
            """)

    @Argument(help: "The model directory to evaluate.")
    var modelDirectory: String

    @Option(help: "pybullet env (e.g. HopperBulletEnv or hopper). Default: from the model's provenance.")
    var env: String?

    @Option(help: "Episodes per K.")
    var episodes: Int = 30

    @Option(help: "Flow step counts K, comma-separated.")
    var steps: String = "1,2,4,8"

    @Option(help: "Candidate actions M per observation. Default: the model's.")
    var candidates: Int?

    @Option(help: "First env seed (episode i uses the env seeded once with S; request seeds derive from S).")
    var seed: Int = 100

    @Option(name: .customLong("max-episode-steps"), help: "Episode time limit (for quick checks). Default: 1000")
    var maxEpisodeSteps: Int?

    @Option(help: "Write the summary JSON here (per-run reports go into a directory beside it). Default: a temporary file, removed afterwards.")
    var json: String?

    @Option(help: "Python with flowgate_client and pybullet. Default: FLOWGATE_PYTHON, else the repository's .venv.")
    var python: String?

    @Option(name: .customLong("log-level"), help: "Server log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "warning"

    func validate() throws {
        do {
            _ = try EvalArguments.steps(steps)
            try EvalArguments.positive(episodes, flag: "--episodes")
            try EvalArguments.positive(candidates, flag: "--candidates")
            try EvalArguments.positive(maxEpisodeSteps, flag: "--max-episode-steps")
            if let env { _ = try EvalEnvironment.resolve(flag: env, provenanceDataset: nil) }
        } catch let e as EvalError {
            throw ValidationError(e.description)
        }
        try LogLevel.check(logLevel)
    }

    func run() throws {
        LogLevel.bootstrap(logLevel, fallback: .warning)
        let logger = Logger(label: "flowgate.eval")
        do {
            // Cheap checks first: the model (the validation `serve` runs) and its env, then Python.
            let model = try PolicyServable(directory: modelDirectory)
            let provenanceDataset = model.bundle.manifest.provenance.dataset
            let environment = try EvalEnvironment.resolve(flag: env, provenanceDataset: provenanceDataset)
            let roots = searchRoots()
            let python = try PythonLocator.locate(flag: python, environment: ProcessInfo.processInfo.environment, roots: roots)
            let clientPath = roots.map { $0 + "/clients/python" }.first { FileManager.default.fileExists(atPath: $0 + "/flowgate_client/evaluate.py") }
            let runner = PythonRunner(python: python, clientPath: clientPath)
            try runner.probe()
            var temporary: URL?
            let summaryPath: String
            if let json {
                summaryPath = json
            } else {
                let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowgate-eval-\(ProcessInfo.processInfo.processIdentifier)")
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                temporary = dir
                summaryPath = dir.appendingPathComponent("eval.json").path
            }
            defer { if let temporary { try? FileManager.default.removeItem(at: temporary) } }
            let plan = EvalPlan(
                modelDirectory: modelDirectory, modelName: model.modelDescription.name, environment: environment,
                episodes: episodes, steps: try EvalArguments.steps(steps), candidates: candidates, seed: seed,
                maxEpisodeSteps: maxEpisodeSteps,
                dataset: EvalPlan.findDataset(provenanceDataset: provenanceDataset, roots: roots), summaryPath: summaryPath)
            print("flowgate eval: \(plan.modelName) in \(environment), \(episodes) episodes per K, K = \(plan.steps.map(String.init).joined(separator: ", ")), python \(python.path)")
            fflush(nil)  // every C stream, stdout included, before the runner writes to the same one
            let status = try Evaluation.run(plan: plan, model: model, runner: runner, logger: logger)
            guard status == 0 else {
                FileHandle.standardError.write(Data("Error: the Python runner exited with status \(status)\n".utf8))
                throw ExitCode(status)
            }
            if let json { print("summary: \(json)") }
        } catch let error as EvalError {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode.failure
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// The source tree the executable was built in (`.build/<triple>/<config>/flowgate` → three
    /// levels up), then the current directory. The built tree comes first so that its
    /// clients/python, the runner of this very version, wins over another checkout's.
    private func searchRoots() -> [String] {
        let cwd = FileManager.default.currentDirectoryPath
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let repo = exe.deletingLastPathComponent().appendingPathComponent("../../..").standardizedFileURL.path
        return cwd == repo ? [cwd] : [repo, cwd]
    }
}
