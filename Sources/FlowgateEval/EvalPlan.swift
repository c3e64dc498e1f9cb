import Foundation

/// Why `flowgate eval` cannot run, in words a user can act on (each names the flag or the thing to
/// install).
public struct EvalError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The pybullet environments the Python runner (`flowgate_client.envs`) knows, with the short
/// names the collector uses in dataset file names (`hopper-medium.npz`). Keep in step with
/// `SHORT_NAMES` in clients/python/flowgate_client/envs.py.
public enum EvalEnvironment {
    public static let known: [(name: String, short: String)] = [
        ("HopperBulletEnv", "hopper"),
        ("AntBulletEnv", "ant"),
        ("InvertedDoublePendulumBulletEnv", "inverted-double-pendulum"),
        ("InvertedPendulumSwingupBulletEnv", "inverted-pendulum-swingup"),
        ("Walker2DBulletEnv", "walker2d"),
        ("HalfCheetahBulletEnv", "halfcheetah"),
    ]

    /// The env to evaluate in: `--env` when given (a full or short name), else the one the model's
    /// provenance implies. A model manifest records no env, only `provenance.dataset`, the dataset
    /// file it was trained on; the collector names files `<short env name>-<kind>.npz`, so the
    /// longest short name the file name starts with decides.
    public static func resolve(flag: String?, provenanceDataset: String?) throws -> String {
        if let flag {
            let lower = flag.lowercased()
            if let e = known.first(where: { $0.name.lowercased() == lower || $0.short == lower || $0.name.lowercased() + "-v0" == lower }) {
                return e.name
            }
            throw EvalError("--env \(flag) is not an environment the runner knows; one of \(known.map(\.name).joined(separator: ", "))")
        }
        let dataset = provenanceDataset ?? ""
        let file = (dataset as NSString).lastPathComponent.lowercased()
        let match =
            known
            .filter { file == $0.short || file.hasPrefix($0.short + "-") || file.hasPrefix($0.short + ".") || file.hasPrefix($0.short + "_") }
            .max { $0.short.count < $1.short.count }
        guard let match else {
            let what = dataset.isEmpty ? "records no dataset" : "was trained on \(dataset), whose name does not say which environment it comes from"
            throw EvalError("the model \(what): pass --env (one of \(known.map(\.name).joined(separator: ", ")))")
        }
        return match.name
    }
}

/// Parsing and checking of `flowgate eval`'s values, so the executable only forwards flags.
public enum EvalArguments {
    /// `1,2,4,8` → [1, 2, 4, 8]; every entry a positive integer, at most 64 (the server's limit is
    /// checked by the server itself).
    public static func steps(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !text.isEmpty else { throw EvalError("--steps is empty: give flow step counts K, e.g. 1,2,4,8") }
        return try parts.map { part in
            guard let k = Int(part), k > 0 else {
                throw EvalError("--steps: '\(part)' is not a positive integer (expected a list such as 1,2,4,8)")
            }
            return k
        }
    }

    public static func positive(_ value: Int?, flag: String) throws {
        if let value, value <= 0 { throw EvalError("\(flag) must be positive, got \(value)") }
    }
}

/// Finds the Python that runs `flowgate_client`: `--python`, then `FLOWGATE_PYTHON`, then
/// `.venv/bin/python` in one of `roots` (the current directory and the repository the executable
/// was built in).
public enum PythonLocator {
    public struct Found: Equatable {
        public let path: String
        /// Where it came from, for messages: `--python`, `FLOWGATE_PYTHON` or the .venv path.
        public let source: String
    }

    public static func locate(
        flag: String?, environment: [String: String], roots: [String],
        isExecutable: (String) -> Bool = { FileManager.default.isExecutableFile(atPath: $0) }
    ) throws -> Found {
        if let flag {
            guard isExecutable(flag) else { throw EvalError("--python \(flag) is not an executable file") }
            return Found(path: flag, source: "--python")
        }
        if let env = environment["FLOWGATE_PYTHON"], !env.isEmpty {
            guard isExecutable(env) else { throw EvalError("FLOWGATE_PYTHON=\(env) is not an executable file") }
            return Found(path: env, source: "FLOWGATE_PYTHON")
        }
        for root in roots {
            let candidate = (root as NSString).appendingPathComponent(".venv/bin/python")
            if isExecutable(candidate) { return Found(path: candidate, source: candidate) }
        }
        throw EvalError(
            "no Python with the flowgate client found: pass --python PATH or set FLOWGATE_PYTHON, or create the repository's .venv (scripts/bootstrap.sh installs it; looked in \(roots.map { $0 + "/.venv" }.joined(separator: ", ")))")
    }
}

/// What one `flowgate eval` run does, fully resolved.
public struct EvalPlan: Equatable {
    public var modelDirectory: String
    public var modelName: String
    public var environment: String
    public var episodes: Int
    public var steps: [Int]
    public var candidates: Int?
    public var seed: Int
    public var maxEpisodeSteps: Int?
    /// The training dataset when it could be found (for the dataset average).
    public var dataset: String?
    /// Summary JSON; per-run reports go into a directory beside it.
    public var summaryPath: String

    public init(
        modelDirectory: String, modelName: String, environment: String, episodes: Int, steps: [Int], candidates: Int?,
        seed: Int, maxEpisodeSteps: Int?, dataset: String?, summaryPath: String
    ) {
        self.modelDirectory = modelDirectory
        self.modelName = modelName
        self.environment = environment
        self.episodes = episodes
        self.steps = steps
        self.candidates = candidates
        self.seed = seed
        self.maxEpisodeSteps = maxEpisodeSteps
        self.dataset = dataset
        self.summaryPath = summaryPath
    }

    /// `python -m flowgate_client.evaluate …` against the server at `endpoint`.
    public func runnerArguments(endpoint: String) -> [String] {
        var a = [
            "-m", "flowgate_client.evaluate", "--endpoint", endpoint, "--env", environment, "--model", modelDirectory,
            "--episodes", String(episodes), "--steps", steps.map(String.init).joined(separator: ","),
            "--seed", String(seed), "--out", summaryPath,
        ]
        if let candidates { a += ["--candidates", String(candidates)] }
        if let maxEpisodeSteps { a += ["--max-episode-steps", String(maxEpisodeSteps)] }
        if let dataset { a += ["--dataset", dataset] }
        return a
    }

    /// The dataset file a provenance names, if it exists: as written (absolute, or relative to the
    /// current directory), else its file name under `data/` of one of `roots`.
    public static func findDataset(
        provenanceDataset: String?, roots: [String],
        exists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) }
    ) -> String? {
        guard let d = provenanceDataset, !d.isEmpty else { return nil }
        if exists(d) { return d }
        let name = (d as NSString).lastPathComponent
        for root in roots {
            let candidate = ((root as NSString).appendingPathComponent("data") as NSString).appendingPathComponent(name)
            if exists(candidate) { return candidate }
        }
        return nil
    }
}
