/// What one `act` computes for each observation.
public struct ActionBatch: Sendable, Equatable {
    /// count × actionDim, in the environment's action units, inside the bounds.
    public var actions: [Float]
    /// Twin-min critic value of each chosen action.
    public var q: [Float]
    /// `E_min` of each chosen action (NaN when the check was skipped or no energy model exists).
    public var energy: [Float]
    /// Calibrated confidence in [0, 1] (0 when not checked).
    public var confidence: [Float]
    /// `E_min ≤ threshold`; false when not checked (an unchecked action is never called reliable).
    public var reliable: [Bool]
}
