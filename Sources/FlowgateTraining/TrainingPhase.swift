import FlowgateCore

/// One phase of training (behaviour flow, critic, QIPO improvement, energy model, …) that the
/// `flowgate train` driver runs step by step, logs, checkpoints and resumes.
///
/// A phase is deterministic given its seed and state: restoring `stateTensors()` into a freshly
/// built phase and continuing gives bit-identical results to an uninterrupted run.
public protocol TrainingPhase: AnyObject {
    /// Short name used in logs, checkpoints and progress ("behaviour", "critic", "qipo", "energy").
    var name: String { get }
    /// Total optimisation steps of this phase.
    var totalSteps: Int { get }
    /// Steps completed so far.
    var completedSteps: Int { get }
    /// Runs one optimisation step and returns its metrics (losses, norms, …) by name.
    func step() throws -> [String: Double]
    /// Everything needed to resume: parameters, optimiser moments, RNG state, step counter, caches.
    func stateTensors() -> [String: Tensor]
    /// Restores what `stateTensors()` saved.
    func loadState(_ tensors: [String: Tensor]) throws
}

/// Saving and restoring an RNG inside a tensor map (four 64-bit words as 16-bit Float chunks,
/// exact because Float represents integers below 2^24).
extension RNG {
    public func tensor() -> Tensor {
        var s: [Float] = []
        for w in stateWords { for k in 0..<4 { s.append(Float((w >> (16 * UInt64(k))) & 0xFFFF)) } }
        return Tensor(shape: [16], scalars: s)
    }

    public init(tensor: Tensor) throws {
        guard tensor.count == 16 else { throw ParameterLoadError.shape("rng", expected: [16], found: tensor.shape) }
        var words: [UInt64] = []
        for i in 0..<4 {
            var w: UInt64 = 0
            for k in 0..<4 { w |= UInt64(tensor.scalars[i * 4 + k]) << (16 * UInt64(k)) }
            words.append(w)
        }
        self.init(stateWords: words)
    }
}

/// Validation values kept in a checkpoint: each under "validation.<name>" as its 64 bits in four
/// 16-bit chunks (exact in Float), so a resumed run logs exactly the values an uninterrupted one
/// would. A checkpoint without them loads as none, and the phase's next measurement fills them.
enum ValidationCheckpoint {
    static let prefix = "validation."

    static func tensors(_ values: [String: Double]) -> [String: Tensor] {
        var s: [String: Tensor] = [:]
        for (name, v) in values {
            let bits = v.bitPattern
            s[prefix + name] = Tensor(shape: [4], scalars: (0..<4).map { Float((bits >> (16 * UInt64($0))) & 0xFFFF) })
        }
        return s
    }

    static func values(in s: [String: Tensor]) throws -> [String: Double] {
        var values: [String: Double] = [:]
        for (k, t) in s where k.hasPrefix(prefix) {
            guard t.count == 4 else { throw ParameterLoadError.shape(k, expected: [4], found: t.shape) }
            var bits: UInt64 = 0
            for i in 0..<4 { bits |= UInt64(t.scalars[i]) << (16 * UInt64(i)) }
            values[String(k.dropFirst(prefix.count))] = Double(bitPattern: bits)
        }
        return values
    }
}

/// The fixed dataset rows a phase measures its validation signal on: at most `count`, drawn once
/// from their own stream (`seed ^ salt`), so the training draws are those of a run without them.
/// They stay in training: holding them out would change the minibatch stream every recorded model
/// was trained with. Phases measure every `every` steps and at their last.
enum ValidationRows {
    static let count = 1024
    static let every = 500

    static func draw(population: Int, seed: UInt64, salt: UInt64) -> [Int] {
        var pick = RNG(seed: seed ^ salt)
        var chosen = Set<Int>()
        let wanted = min(count, population)
        while chosen.count < wanted { chosen.insert(pick.int(below: population)) }
        return chosen.sorted()
    }

    static func due(step: Int, of total: Int) -> Bool { step % every == 0 || step == total }

    /// Copies the rows' observations (and actions, when asked) into `observations` and `actions`.
    static func gather(_ indices: [Int], from data: PreparedData, observations: FloatBuffer, actions: FloatBuffer? = nil) {
        observations.reserve(indices.count * data.observationDim)
        PreparedData.gather(data.observations, width: data.observationDim, indices: indices, into: observations.pointer)
        if let actions {
            actions.reserve(indices.count * data.actionDim)
            PreparedData.gather(data.actions, width: data.actionDim, indices: indices, into: actions.pointer)
        }
    }
}
