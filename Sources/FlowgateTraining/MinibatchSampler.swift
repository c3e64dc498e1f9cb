import FlowgateCore

/// The minibatch draw every training phase shares: the phase's random stream, the rows of the
/// current minibatch, and the checkpoint state of both.
///
/// Rows are drawn uniformly with replacement, one `rng.int(below: population)` per row, in the order
/// every phase has drawn them since the first shipped model, so a model's recorded command still
/// reproduces its weights bit for bit. The same `rng` also drives the phase's other draws (flow
/// noise and times, support sets, negatives) in the order the phase makes them, which is why it is
/// exposed rather than hidden behind `draw`.
struct MinibatchSampler {
    /// The phase's random stream: minibatch rows and everything else the phase draws.
    var rng: RNG
    /// Rows to draw from (dataset rows, pool entries, manifold rows).
    let population: Int
    /// The rows of the current minibatch (preallocated; `draw` overwrites them).
    private(set) var indices: [Int]

    init(rng: RNG, population: Int, batchSize: Int) {
        self.rng = rng
        self.population = population
        indices = [Int](repeating: 0, count: batchSize)
    }

    init(seed: UInt64, population: Int, batchSize: Int) {
        self.init(rng: RNG(seed: seed), population: population, batchSize: batchSize)
    }

    var batchSize: Int { indices.count }

    /// Draws the next minibatch's rows into `indices`.
    mutating func draw() {
        for k in indices.indices { indices[k] = rng.int(below: population) }
    }

    /// Draws the next minibatch of dataset rows and gathers their observations and actions
    /// (`batchSize × observationDim` and `batchSize × actionDim`, row-major).
    mutating func draw(from data: PreparedData, observations: FloatBuffer, actions: FloatBuffer) {
        draw()
        let b = batchSize
        observations.reserve(b * data.observationDim)
        actions.reserve(b * data.actionDim)
        PreparedData.gather(data.observations, width: data.observationDim, indices: indices, into: observations.pointer)
        PreparedData.gather(data.actions, width: data.actionDim, indices: indices, into: actions.pointer)
    }

    /// The checkpoint entry of the random stream (the rows are redrawn every step).
    func save(into state: inout [String: Tensor], key: String) {
        state[key] = rng.tensor()
    }

    /// Restores what `save(into:key:)` wrote; a missing entry is an error naming the key.
    mutating func restore(from state: [String: Tensor], key: String) throws {
        guard let t = state[key] else { throw ParameterLoadError.missing(key) }
        rng = try RNG(tensor: t)
    }
}
