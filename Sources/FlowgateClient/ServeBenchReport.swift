public import Foundation

/// The JSON report of `flowgate bench serve --json OUT` (schema in docs/benchmarks.md): one file
/// for a whole sweep, one `results` row per measured cell. `Machine` is the executable's
/// description of the machine.
public struct ServeBenchReport<Machine: Codable>: Codable {
    public var benchmark = "serve"
    /// 2: open loop, hdrhistogram percentiles, sweeps, compute bound (1 had closed-loop rows only).
    public var schemaVersion = 2
    public var machine: Machine
    /// `name vVERSION` of the model the server reported.
    public var model: String
    /// Where the model came from (model directory, demo, quick model, external server).
    public var modelSource: String
    public var endpoint: String
    /// `in-process`, `loopback` (an external server on this host) or `remote`.
    public var target: String
    /// `closed` (N clients, one request in flight each) or `open` (Poisson arrivals at a rate).
    public var mode: String
    /// Request budget and time limit of every cell.
    public var requestsPerCell: Int
    public var durationLimitS: Double
    public var timeoutMs: Int
    public var seed: UInt64
    /// The machine's measured peak and the 2-core bound (nil when it cannot apply, e.g. remote).
    public var computeBound: ComputeBound?
    public var results: [ServeBenchRow]

    public init(
        machine: Machine, model: String, modelSource: String, endpoint: String, target: String, mode: String,
        requestsPerCell: Int, durationLimitS: Double, timeoutMs: Int, seed: UInt64, computeBound: ComputeBound?,
        results: [ServeBenchRow]
    ) {
        self.machine = machine
        self.model = model
        self.modelSource = modelSource
        self.endpoint = endpoint
        self.target = target
        self.mode = mode
        self.requestsPerCell = requestsPerCell
        self.durationLimitS = durationLimitS
        self.timeoutMs = timeoutMs
        self.seed = seed
        self.computeBound = computeBound
        self.results = results
    }

    /// The report as written to disk: pretty-printed, sorted, snake_case keys.
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.keyEncodingStrategy = .convertToSnakeCase
        return try e.encode(self)
    }
}

/// One cell of a sweep: one setting of (mode, concurrency or rate, K, M, N, check, window).
public struct ServeBenchRow: Codable, Sendable, Equatable {
    public var mode: String
    /// Closed loop: concurrent clients. Open loop: DEALER connections the arrivals are spread over.
    public var concurrency: Int
    /// Open loop: the target Poisson rate (req/s); nil in closed loop.
    public var targetRateRps: Double?
    /// Open loop: requests offered per second of the schedule (the seeded draw of the target rate).
    public var offeredRateRps: Double?
    /// Settings actually requested (the model's defaults filled in).
    public var steps: Int
    public var candidates: Int
    public var samples: Int
    public var check: Bool
    /// The in-process server's batching window; nil for an external server.
    public var maxDelayUs: Int?
    /// Requests sent (closed: timed requests; open: the schedule's length).
    public var sent: Int
    /// Successful replies.
    public var requests: Int
    /// Failed requests, total and by code (server error codes, `timeout`, `send_failed`, `transport`, …).
    public var errors: Int
    public var errorsByCode: [String: Int]
    /// Open loop: replies that arrived after their request had been counted as a timeout.
    public var lateReplies: Int
    public var seconds: Double
    /// Successful replies per second.
    public var throughputRps: Double
    /// Closed loop: round trip of each request. Open loop: from its intended send time.
    public var latencyMs: LatencySummary
    /// Open loop only: from the actual send (service time as the client sees it).
    public var serviceMs: LatencySummary?
    /// Open loop only: how far behind its schedule the sender ever was.
    public var maxSendLagMs: Double?
    public var serverQueueUsMean, serverComputeUsMean, meanBatch: Double
    /// Compute per observation at these settings (the server's work-budget count), when known.
    public var mflopPerObservation: Double?
    /// `throughput × FLOPs per observation`.
    public var achievedGflops: Double?
    /// Observations per second at the 2-core bound, and the fraction of it reached.
    public var boundObsPerS: Double?
    public var fractionOfBound: Double?

    public init(
        mode: String, concurrency: Int, targetRateRps: Double? = nil, offeredRateRps: Double? = nil, steps: Int,
        candidates: Int, samples: Int, check: Bool, maxDelayUs: Int?, sent: Int, requests: Int, errorsByCode: [String: Int],
        lateReplies: Int = 0, seconds: Double, throughputRps: Double, latencyMs: LatencySummary,
        serviceMs: LatencySummary? = nil, maxSendLagMs: Double? = nil, serverQueueUsMean: Double,
        serverComputeUsMean: Double, meanBatch: Double
    ) {
        self.mode = mode
        self.concurrency = concurrency
        self.targetRateRps = targetRateRps
        self.offeredRateRps = offeredRateRps
        self.steps = steps
        self.candidates = candidates
        self.samples = samples
        self.check = check
        self.maxDelayUs = maxDelayUs
        self.sent = sent
        self.requests = requests
        self.errors = errorsByCode.values.reduce(0, +)
        self.errorsByCode = errorsByCode
        self.lateReplies = lateReplies
        self.seconds = seconds
        self.throughputRps = throughputRps
        self.latencyMs = latencyMs
        self.serviceMs = serviceMs
        self.maxSendLagMs = maxSendLagMs
        self.serverQueueUsMean = serverQueueUsMean
        self.serverComputeUsMean = serverComputeUsMean
        self.meanBatch = meanBatch
    }

    /// Fills in the compute columns from the FLOPs per observation and the bound.
    public mutating func account(flopsPerObservation flops: Double, bound: ComputeBound?) {
        guard flops > 0 else { return }
        mflopPerObservation = flops / 1e6
        achievedGflops = throughputRps * flops / 1e9
        if let bound {
            let obs = bound.observationsPerSecond(flopsPerObservation: flops)
            boundObsPerS = obs
            fractionOfBound = throughputRps / obs
        }
    }
}

/// The compute bound of the machine the server runs on: its peak measured in the same run.
public struct ComputeBound: Codable, Sendable, Equatable {
    /// What was timed for the peak (e.g. `sgemm 256x256x256, 1 BLAS thread, best of 5`).
    public var probe: String
    /// GFLOP/s of one core on the probe.
    public var peakGflopsPerCore: Double
    /// Cores the bound counts (the server's share of the machine).
    public var cores: Int

    public init(probe: String, peakGflopsPerCore: Double, cores: Int) {
        self.probe = probe
        self.peakGflopsPerCore = peakGflopsPerCore
        self.cores = cores
        boundGflops = peakGflopsPerCore * Double(cores)
    }

    /// GFLOP/s of all `cores` at the peak.
    public var boundGflops: Double

    /// Observations per second if every core did nothing but this work at the peak.
    public func observationsPerSecond(flopsPerObservation flops: Double) -> Double {
        flops > 0 ? boundGflops * 1e9 / flops : .infinity
    }
}
