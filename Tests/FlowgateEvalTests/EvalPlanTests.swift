import Foundation
import Testing
@testable import FlowgateEval

@Suite("flowgate eval: arguments, env, Python")
struct EvalPlanTests {
    @Test("--steps parses a comma list of positive K and names a bad entry")
    func steps() throws {
        #expect(try EvalArguments.steps("1,2,4,8") == [1, 2, 4, 8])
        #expect(try EvalArguments.steps(" 4 ") == [4])
        for bad in ["", "0", "1,,2", "1,-2", "two", "1.5"] {
            #expect(throws: EvalError.self) { try EvalArguments.steps(bad) }
        }
        #expect(throws: EvalError("--steps: 'x' is not a positive integer (expected a list such as 1,2,4,8)")) {
            try EvalArguments.steps("1,x")
        }
        #expect(throws: EvalError("--episodes must be positive, got 0")) { try EvalArguments.positive(0, flag: "--episodes") }
        try EvalArguments.positive(nil, flag: "--candidates")
    }

    @Test("the env comes from --env, else from the provenance's dataset file name")
    func environment() throws {
        #expect(try EvalEnvironment.resolve(flag: nil, provenanceDataset: "hopper-medium.npz") == "HopperBulletEnv")
        #expect(try EvalEnvironment.resolve(flag: nil, provenanceDataset: "/work/data/hopper-medium-replay.npz") == "HopperBulletEnv")
        #expect(try EvalEnvironment.resolve(flag: nil, provenanceDataset: "inverted-double-pendulum-medium.npz") == "InvertedDoublePendulumBulletEnv")
        #expect(try EvalEnvironment.resolve(flag: nil, provenanceDataset: "data/ant-medium-replay.hdf5") == "AntBulletEnv")
        #expect(try EvalEnvironment.resolve(flag: nil, provenanceDataset: "data/walker2d-medium.npz") == "Walker2DBulletEnv")
        #expect(try EvalEnvironment.resolve(flag: nil, provenanceDataset: "halfcheetah-medium-replay.npz") == "HalfCheetahBulletEnv")
        // --env wins over the provenance, in any spelling the runner accepts
        #expect(try EvalEnvironment.resolve(flag: "ant", provenanceDataset: "hopper-medium.npz") == "AntBulletEnv")
        #expect(try EvalEnvironment.resolve(flag: "HopperBulletEnv-v0", provenanceDataset: nil) == "HopperBulletEnv")
        // "antelope.npz" is not ant data; an unknown name or none at all needs --env
        for dataset in ["antelope.npz", "mydata.npz", "", nil] as [String?] {
            #expect(throws: EvalError.self) { try EvalEnvironment.resolve(flag: nil, provenanceDataset: dataset) }
        }
        do {
            _ = try EvalEnvironment.resolve(flag: nil, provenanceDataset: "robot-logs.npz")
            Issue.record("expected an error")
        } catch let e as EvalError {
            #expect(e.description.contains("robot-logs.npz") && e.description.contains("pass --env"))
        }
        #expect(throws: EvalError.self) { try EvalEnvironment.resolve(flag: "HumanoidBulletEnv", provenanceDataset: nil) }
    }

    @Test("Python: --python, then FLOWGATE_PYTHON, then .venv of the roots; a clear error otherwise")
    func python() throws {
        let exists: Set<String> = ["/opt/py", "/env/py", "/repo/.venv/bin/python"]
        let isExec = { (p: String) in exists.contains(p) }
        let env = ["FLOWGATE_PYTHON": "/env/py"]
        #expect(try PythonLocator.locate(flag: "/opt/py", environment: env, roots: ["/repo"], isExecutable: isExec).source == "--python")
        #expect(try PythonLocator.locate(flag: nil, environment: env, roots: ["/repo"], isExecutable: isExec).path == "/env/py")
        #expect(try PythonLocator.locate(flag: nil, environment: [:], roots: ["/cwd", "/repo"], isExecutable: isExec).path == "/repo/.venv/bin/python")
        #expect(throws: EvalError("--python /missing is not an executable file")) {
            try PythonLocator.locate(flag: "/missing", environment: env, roots: ["/repo"], isExecutable: isExec)
        }
        #expect(throws: EvalError("FLOWGATE_PYTHON=/gone is not an executable file")) {
            try PythonLocator.locate(flag: nil, environment: ["FLOWGATE_PYTHON": "/gone"], roots: ["/repo"], isExecutable: isExec)
        }
        do {
            _ = try PythonLocator.locate(flag: nil, environment: [:], roots: ["/cwd"], isExecutable: isExec)
            Issue.record("expected an error")
        } catch let e as EvalError {
            #expect(e.description.contains("--python") && e.description.contains("FLOWGATE_PYTHON") && e.description.contains("/cwd/.venv"))
        }
    }

    @Test("a Python without pybullet is refused before anything is served, naming what to install")
    func probeWithoutPybullet() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowgate-eval-probe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // A stand-in interpreter that fails the import check the way CPython does.
        let fake = dir.appendingPathComponent("python")
        try "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho \"ModuleNotFoundError: No module named 'pybullet'\" >&2\nexit 1\n"
            .write(to: fake, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake.path)
        let runner = PythonRunner(python: .init(path: fake.path, source: "--python"), clientPath: nil)
        do {
            try runner.probe()
            Issue.record("expected the probe to fail")
        } catch let e as EvalError {
            #expect(e.description.contains("No module named 'pybullet'"))
            #expect(e.description.contains("pip install pybullet"))
            #expect(e.description.contains("--python"))
        }
        // The same stand-in succeeding passes the probe (an atomic write makes a new file: mode again).
        try "#!/bin/sh\nexit 0\n".write(to: fake, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake.path)
        try runner.probe()
    }

    @Test("the runner's arguments carry the endpoint, model, env, K list and options")
    func runnerArguments() {
        var plan = EvalPlan(
            modelDirectory: "models/hopper-medium", modelName: "hopper-medium", environment: "HopperBulletEnv",
            episodes: 3, steps: [1, 2], candidates: nil, seed: 7, maxEpisodeSteps: nil, dataset: nil, summaryPath: "/tmp/e.json")
        let a = plan.runnerArguments(endpoint: "tcp://127.0.0.1:4000")
        #expect(
            a == [
                "-m", "flowgate_client.evaluate", "--endpoint", "tcp://127.0.0.1:4000", "--env", "HopperBulletEnv",
                "--model", "models/hopper-medium", "--episodes", "3", "--steps", "1,2", "--seed", "7", "--out", "/tmp/e.json",
            ])
        plan.candidates = 8
        plan.maxEpisodeSteps = 50
        plan.dataset = "data/hopper-medium.npz"
        let b = plan.runnerArguments(endpoint: "e")
        #expect(Array(b.suffix(6)) == ["--candidates", "8", "--max-episode-steps", "50", "--dataset", "data/hopper-medium.npz"])
    }

    @Test("the dataset is found as written or under data/ of a root")
    func dataset() {
        let files: Set<String> = ["/repo/data/hopper-medium.npz", "/abs/x.npz"]
        let exists = { (p: String) in files.contains(p) }
        #expect(EvalPlan.findDataset(provenanceDataset: "/abs/x.npz", roots: [], exists: exists) == "/abs/x.npz")
        #expect(EvalPlan.findDataset(provenanceDataset: "hopper-medium.npz", roots: ["/cwd", "/repo"], exists: exists) == "/repo/data/hopper-medium.npz")
        #expect(EvalPlan.findDataset(provenanceDataset: "other.npz", roots: ["/repo"], exists: exists) == nil)
        #expect(EvalPlan.findDataset(provenanceDataset: nil, roots: ["/repo"], exists: exists) == nil)
    }
}
