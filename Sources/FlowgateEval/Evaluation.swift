import FlowgateServer
import Foundation
import Logging

/// `flowgate eval`: serves one model in-process on a free loopback port (the same
/// `InferenceServer` and `PolicyServable` as `flowgate serve`) and runs the Python runner
/// against it, so every action of every episode goes over the socket.
public enum Evaluation {
    /// Returns the runner's exit status (0 when every run completed).
    public static func run(plan: EvalPlan, model: PolicyServable, runner: PythonRunner, logger: Logger) throws -> Int32 {
        var configuration = ServerConfiguration()
        configuration.endpoint = "tcp://127.0.0.1:*"
        let server = try InferenceServer(models: [model], configuration: configuration, logger: logger)
        server.start()
        defer {
            server.requestShutdown()
            server.wait()
        }
        logger.info("serving \(plan.modelName) on \(server.endpoint) for the runner")
        return try runner.run(plan.runnerArguments(endpoint: server.endpoint))
    }
}
