/// The settings of one `ActionSelector.act` call: flow steps, candidates, energy samples, whether to
/// check (defaults come from the model manifest; the server enforces limits). Not the wire type
/// `FlowgateProtocol.SamplingSettings`, which is what `info` reports as a model's defaults.
public struct SelectionSettings: Sendable, Hashable {
    /// Flow steps K.
    public var steps: Int
    /// Candidates M per observation.
    public var candidates: Int
    /// Next-state samples N for the energy check.
    public var samples: Int
    /// Run the energy check.
    public var check: Bool

    public init(steps: Int, candidates: Int, samples: Int, check: Bool = true) {
        self.steps = steps
        self.candidates = candidates
        self.samples = samples
        self.check = check
    }
}
