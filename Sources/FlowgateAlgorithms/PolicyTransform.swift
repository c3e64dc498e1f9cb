/// Everything a served model needs to turn raw observations into actions: the normaliser and
/// action bounds from the manifest, the flow policy, the critic and (optionally) the energy model.
public struct PolicyTransform: Sendable, Equatable {
    public var observationMean: [Float]
    public var observationStd: [Float]
    public var actionLow: [Float]
    public var actionHigh: [Float]

    public init(observationMean: [Float], observationStd: [Float], actionLow: [Float], actionHigh: [Float]) {
        self.observationMean = observationMean
        self.observationStd = observationStd
        self.actionLow = actionLow
        self.actionHigh = actionHigh
    }
}
