/// Upper limits a request may ask for.
public struct SamplingLimits: Sendable, Equatable, Hashable, Codable {
    public var maxSteps: Int
    public var maxCandidates: Int
    public var maxSamples: Int
    /// Most observations in one request.
    public var maxBatch: Int

    public init(maxSteps: Int, maxCandidates: Int, maxSamples: Int, maxBatch: Int) {
        self.maxSteps = maxSteps
        self.maxCandidates = maxCandidates
        self.maxSamples = maxSamples
        self.maxBatch = maxBatch
    }
}
