import FlowgateCore

/// What every optimising training phase has in common: its step count, its Adam optimiser, its
/// minibatch sampler (random stream and rows), and their checkpoint entries. A phase owns one, draws
/// its minibatch through `sampler`, runs its own loss and backward pass, and ends the step with
/// `finishStep()`.
struct PhaseSkeleton {
    /// Names of the checkpoint entries. The behaviour, regression, critic, QIPO and reflow phases
    /// each write their own checkpoint section (`rng`, `step`, `adam.*`); the two energy phases share
    /// one and suffix theirs (`rng_ae`, `step_ae`, `adam_ae.*`), with the step in two 24-bit halves.
    struct Keys {
        let rng: String
        let step: String
        let adam: String
        let wideStep: Bool

        static let standard = Keys(rng: "rng", step: "step", adam: "adam", wideStep: false)
        static func suffixed(_ suffix: String) -> Keys {
            Keys(rng: "rng_" + suffix, step: "step_" + suffix, adam: "adam_" + suffix, wideStep: true)
        }
    }

    let totalSteps: Int
    private(set) var completedSteps = 0
    let optimizer: Adam
    var sampler: MinibatchSampler
    let keys: Keys

    init(steps: Int, optimizer: Adam, sampler: MinibatchSampler, keys: Keys = .standard) {
        totalSteps = steps
        self.optimizer = optimizer
        self.sampler = sampler
        self.keys = keys
    }

    /// Adam on `parameters` at `learningRate`, and minibatches of `batchSize` rows drawn from
    /// `population` by a stream seeded with `seed`.
    init(steps: Int, parameters: [Parameter], learningRate: Float, seed: UInt64, population: Int, batchSize: Int) {
        self.init(
            steps: steps, optimizer: Adam(parameters: parameters, learningRate: learningRate),
            sampler: MinibatchSampler(seed: seed, population: population, batchSize: batchSize))
    }

    var isFinished: Bool { completedSteps == totalSteps }

    /// After the backward pass: one optimiser step and one more completed step. Returns the
    /// gradient norm the optimiser saw (the `grad_norm` metric).
    mutating func finishStep() -> Double {
        optimizer.step()
        completedSteps += 1
        return Double(optimizer.lastGradNorm)
    }

    /// The optimiser moments, random stream and step counter, plus `parameters` under `prefix`.
    func state(_ parameters: [Parameter] = [], prefix: String = "") -> [String: Tensor] {
        var s = parameters.namedTensors().prefixed(prefix)
        s.merge(optimizer.stateTensors(prefix: keys.adam)) { a, _ in a }
        sampler.save(into: &s, key: keys.rng)
        s[keys.step] = keys.wideStep ? stepTensor(completedSteps) : Tensor(shape: [1], scalars: [Float(completedSteps)])
        return s
    }

    /// Restores what `state` wrote (and the parameters under `prefix`).
    mutating func load(_ s: [String: Tensor], into parameters: [Parameter] = [], prefix: String = "") throws {
        if !parameters.isEmpty { try parameters.load(from: s.unprefixed(prefix)) }
        try optimizer.loadState(s, prefix: keys.adam)
        try sampler.restore(from: s, key: keys.rng)
        completedSteps = keys.wideStep ? try stepValue(s[keys.step], name: keys.step) : Int(s[keys.step]?.scalars.first ?? 0)
    }
}
