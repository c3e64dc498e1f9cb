import FlowgateTestSupport
import Testing
import FlowgateCore

@Suite("MLP forward and backward")
struct MLPGradientTests {
    static let configurations: [(Activation, Bool, Activation)] = [
        (.relu, false, .identity), (.silu, false, .identity), (.tanh, false, .tanh),
        (.silu, true, .identity), (.relu, true, .silu), (.identity, false, .relu),
    ]

    // Tolerances (relative error of the whole gradient vector, central differences with ε = 3e-3 in
    // Float32): smooth networks agree to about 1e-3; with ReLU a perturbation can cross a kink, so
    // those configurations get 1e-2.
    @Test("parameter and input gradients match finite differences", arguments: 0..<6)
    func gradients(_ index: Int) {
        let (act, ln, outAct) = Self.configurations[index]
        let spec = MLPSpec(inputDim: 5, hiddenDims: [7, 6], outputDim: 3, activation: act, layerNorm: ln, outputActivation: outAct)
        var rng = RNG(seed: 42 + UInt64(index))
        let mlp = MLP(spec: spec, prefix: "net", rng: &rng)
        let batch = 4
        var input = randomArray(batch * 5, seed: 7)
        let c = randomArray(batch * 3, seed: 8)

        func loss(_ x: [Float]) -> Double { dot(mlp.forward(x, batch: batch), c) }

        let smooth = act != .relu && outAct != .relu
        let tolerance = smooth ? 2e-3 : 1e-2
        _ = mlp.forward(input, batch: batch)
        mlp.parameters.zeroGrad()
        let gIn = mlp.backward(c)
        // Input gradient.
        let inputError = relativeGradientError(values: &input, analytic: gIn, epsilon: 3e-3) { loss($0) }
        #expect(inputError < tolerance, "input gradient error \(inputError) for \(act) ln=\(ln) out=\(outAct)")
        // Every parameter.
        for p in mlp.parameters {
            let analytic = p.grad
            var values = p.value
            let err = relativeGradientError(values: &values, analytic: analytic, epsilon: 3e-3) { v in
                let keep = p.value
                p.value = v
                defer { p.value = keep }
                return loss(input)
            }
            #expect(err < tolerance, "gradient error \(err) for \(p.name) (\(act), ln=\(ln), out=\(outAct))")
        }
    }

    @Test("gradients accumulate across backward calls and zeroGrad clears them")
    func accumulation() {
        var rng = RNG(seed: 1)
        let mlp = MLP(spec: MLPSpec(inputDim: 3, hiddenDims: [4], outputDim: 2), prefix: "m", rng: &rng)
        let x = randomArray(6, seed: 2), c = randomArray(4, seed: 3)
        _ = mlp.forward(x, batch: 2)
        _ = mlp.backward(c)
        let once = mlp.parameters[0].grad
        _ = mlp.forward(x, batch: 2)
        _ = mlp.backward(c)
        for (a, b) in zip(mlp.parameters[0].grad, once) { #expect(abs(a - 2 * b) <= 1e-5 * max(1, abs(b))) }
        mlp.parameters.zeroGrad()
        #expect(mlp.parameters.allSatisfy { $0.grad.allSatisfy { $0 == 0 } })
    }

    @Test("input-only backward leaves parameter gradients untouched")
    func inputOnlyBackward() {
        var rng = RNG(seed: 5)
        let mlp = MLP(spec: MLPSpec(inputDim: 3, hiddenDims: [8], outputDim: 1, activation: .silu), prefix: "e", rng: &rng)
        _ = mlp.forward(randomArray(9, seed: 1), batch: 3)
        _ = mlp.backward([1, 1, 1], accumulateParameterGradients: false)
        #expect(mlp.parameters.allSatisfy { $0.grad.allSatisfy { $0 == 0 } })
    }

    @Test("a row's output does not depend on the batch it is computed in")
    func batchIndependence() {
        var rng = RNG(seed: 9)
        let mlp = MLP(spec: MLPSpec(inputDim: 6, hiddenDims: [32, 32], outputDim: 2, activation: .silu, layerNorm: true), prefix: "p", rng: &rng)
        let x = randomArray(16 * 6, seed: 4)
        let full = mlp.forward(x, batch: 16)
        for r in [0, 7, 15] {
            let single = mlp.forward(Array(x[(r * 6)..<(r * 6 + 6)]), batch: 1)
            for j in 0..<2 { #expect(abs(single[j] - full[r * 2 + j]) <= 1e-5) }
        }
    }

    @Test("a replica shares weights and computes the same outputs")
    func replica() {
        var rng = RNG(seed: 11)
        let mlp = MLP(spec: MLPSpec(inputDim: 4, hiddenDims: [16], outputDim: 3), prefix: "p", rng: &rng)
        let r = mlp.replica()
        let x = randomArray(8, seed: 5)
        #expect(mlp.forward(x, batch: 2) == r.forward(x, batch: 2))
        mlp.weights[0].value[0] += 1
        #expect(mlp.forward(x, batch: 2) == r.forward(x, batch: 2))
    }

    @Test("tensor names and shapes follow MLPSpec, and loading checks them")
    func loading() throws {
        var rng = RNG(seed: 3)
        let spec = MLPSpec(inputDim: 4, hiddenDims: [5], outputDim: 2, layerNorm: true)
        let mlp = MLP(spec: spec, prefix: "q1", rng: &rng)
        let names = Set(mlp.parameters.map(\.name))
        #expect(names == Set(spec.tensorShapes(prefix: "q1").map(\.name)))
        #expect(mlp.parameters.scalarCount == spec.parameterCount)
        var tensors = mlp.parameters.namedTensors()
        let copy = try MLP(spec: spec, prefix: "q1", tensors: tensors)
        let x = randomArray(8, seed: 1)
        #expect(copy.forward(x, batch: 2) == mlp.forward(x, batch: 2))
        tensors["q1.0.weight"] = Tensor(shape: [4, 5])
        #expect(throws: ParameterLoadError.shape("q1.0.weight", expected: [5, 4], found: [4, 5])) {
            _ = try MLP(spec: spec, prefix: "q1", tensors: tensors)
        }
        tensors.removeValue(forKey: "q1.1.bias")
        #expect(throws: ParameterLoadError.self) { _ = try MLP(spec: spec, prefix: "q1", tensors: tensors) }
    }
}
