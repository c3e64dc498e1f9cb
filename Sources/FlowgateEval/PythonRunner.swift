import Foundation

/// Runs the Python side of `flowgate eval` (`flowgate_client.evaluate`, which drives pybullet
/// episodes through `flowgate_client.simulate`).
public struct PythonRunner {
    public let python: PythonLocator.Found
    /// Prepended to PYTHONPATH (the repository's clients/python), so the runner of this checkout is
    /// used even when the Python has no `pip install -e` of it.
    public let clientPath: String?

    public init(python: PythonLocator.Found, clientPath: String?) {
        self.python = python
        self.clientPath = clientPath
    }

    /// Checks that the Python can import pybullet's environments and the client, before a server
    /// is started; a failure names the missing module and what to install.
    public func probe() throws {
        let script =
            "import sys, contextlib, io, warnings\nwarnings.simplefilter('ignore')\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            + "    import numpy, zmq, msgpack\n    import pybullet, pybullet_envs\n    import flowgate_client.evaluate as ev\n"
            + "if not hasattr(ev, 'markdown_table'):\n"
            + "    sys.exit('flowgate_client at ' + ev.__file__ + ' is older than this flowgate eval (its evaluate has no --endpoint)')\n"
        let (status, output) = try capture(["-c", script])
        guard status != 0 else { return }
        let last = output.split(separator: "\n").last.map(String.init) ?? "exit status \(status)"
        var hint = "install the client's requirements into it (pip install -r clients/python/requirements.txt, or scripts/bootstrap.sh for the repository's .venv)"
        if last.contains("pybullet") {
            hint = "install pybullet into it (pip install pybullet==3.2.7 gym==0.23.1 'setuptools<82', as in clients/python/requirements.txt)"
        } else if last.contains("is older than") {
            hint = "run the flowgate binary built in the repository whose clients/python it should use, or pip install -e that clients/python"
        } else if last.contains("pkg_resources") {
            hint = "pybullet_envs needs pkg_resources: pip install 'setuptools<82' into it"
        }
        throw EvalError("the Python at \(python.path) (from \(python.source)) cannot run the pybullet runner: \(last); \(hint), or point --python / FLOWGATE_PYTHON at a Python that has it")
    }

    /// Runs `python ARGS` with stdout and stderr passed through; returns its exit status.
    public func run(_ arguments: [String]) throws -> Int32 {
        let p = makeProcess(arguments)
        try p.run()
        p.waitUntilExit()
        return p.terminationReason == .exit ? p.terminationStatus : 128 + p.terminationStatus
    }

    private func capture(_ arguments: [String]) throws -> (Int32, String) {
        let p = makeProcess(arguments)
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do {
            try p.run()
        } catch {
            throw EvalError("cannot start the Python at \(python.path) (from \(python.source)): \(error)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    private func makeProcess(_ arguments: [String]) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python.path)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        if let clientPath {
            env["PYTHONPATH"] = [clientPath, env["PYTHONPATH"]].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ":")
        }
        env["PYTHONUNBUFFERED"] = "1"
        p.environment = env
        return p
    }
}
