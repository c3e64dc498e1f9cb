/// What the server tells clients about one model (`info` → `models[i]`).
public struct ModelInfo: Sendable, Equatable {
    public var name: String
    public var version: String
    public var observationDim: Int
    public var actionDim: Int
    public var actionLow: [Float]
    public var actionHigh: [Float]
    public var defaults: SamplingSettings
    public var limits: SamplingLimits
    /// Energy threshold above which an action is flagged unreliable.
    public var threshold: Float
    /// Quantile of calibration energies the threshold was set at (e.g. 0.95).
    public var calibrationQuantile: Float
    /// Where the model came from (dataset, commit, training run, ...).
    public var provenance: [String: String]

    public init(
        name: String, version: String, observationDim: Int, actionDim: Int, actionLow: [Float],
        actionHigh: [Float], defaults: SamplingSettings, limits: SamplingLimits, threshold: Float,
        calibrationQuantile: Float, provenance: [String: String] = [:]
    ) {
        self.name = name
        self.version = version
        self.observationDim = observationDim
        self.actionDim = actionDim
        self.actionLow = actionLow
        self.actionHigh = actionHigh
        self.defaults = defaults
        self.limits = limits
        self.threshold = threshold
        self.calibrationQuantile = calibrationQuantile
        self.provenance = provenance
    }

    /// The model as a MessagePack map (keys sorted where they come from a dictionary).
    public var messagePackValue: MessagePackValue {
        .stringMap([
            ("name", .string(name)),
            ("version", .string(version)),
            ("obs_dim", .int(Int64(observationDim))),
            ("act_dim", .int(Int64(actionDim))),
            ("action_low", .array(actionLow.map { .float($0) })),
            ("action_high", .array(actionHigh.map { .float($0) })),
            (
                "defaults",
                .map([
                    "steps": .int(Int64(defaults.steps)), "candidates": .int(Int64(defaults.candidates)),
                    "samples": .int(Int64(defaults.samples)), "check": .bool(true),
                ])
            ),
            (
                "limits",
                .map([
                    "max_steps": .int(Int64(limits.maxSteps)),
                    "max_candidates": .int(Int64(limits.maxCandidates)),
                    "max_samples": .int(Int64(limits.maxSamples)),
                    "max_batch": .int(Int64(limits.maxBatch)),
                ])
            ),
            ("threshold", .float(threshold)),
            ("calibration_quantile", .float(calibrationQuantile)),
            ("provenance", .stringMap(provenance.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
        ])
    }

    /// Reads a model map from an `info` reply.
    public init(_ v: MessagePackValue) throws(ProtocolError) {
        func int(_ m: MessagePackValue?, _ k: String) throws(ProtocolError) -> Int {
            guard let i = m?[k]?.intValue else { throw ProtocolError(.internal, "malformed info reply: '\(k)'") }
            return i
        }
        func floats(_ k: String) -> [Float] {
            (v[k]?.arrayValue ?? []).map { Float($0.doubleValue ?? .nan) }
        }
        let d = v["defaults"], l = v["limits"]
        self.init(
            name: v["name"]?.stringValue ?? "", version: v["version"]?.stringValue ?? "",
            observationDim: try int(v, "obs_dim"), actionDim: try int(v, "act_dim"),
            actionLow: floats("action_low"), actionHigh: floats("action_high"),
            defaults: SamplingSettings(
                steps: try int(d, "steps"), candidates: try int(d, "candidates"), samples: try int(d, "samples")),
            limits: SamplingLimits(
                maxSteps: try int(l, "max_steps"), maxCandidates: try int(l, "max_candidates"),
                maxSamples: try int(l, "max_samples"), maxBatch: try int(l, "max_batch")),
            threshold: Float(v["threshold"]?.doubleValue ?? .nan),
            calibrationQuantile: Float(v["calibration_quantile"]?.doubleValue ?? .nan),
            provenance: Dictionary(
                (v["provenance"]?.mapEntries ?? []).compactMap { e in
                    e.key.stringValue.map { ($0, e.value.stringValue ?? "") }
                }, uniquingKeysWith: { a, _ in a }))
    }
}
