/// Sampling settings (flow steps K, candidates M, next-state samples N).
public struct SamplingSettings: Sendable, Equatable, Hashable, Codable {
    public var steps: Int
    public var candidates: Int
    public var samples: Int

    public init(steps: Int, candidates: Int, samples: Int) {
        self.steps = steps
        self.candidates = candidates
        self.samples = samples
    }
}
