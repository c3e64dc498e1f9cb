/// A multilayer perceptron with forward and backward passes on `DenseKernels` (libxsmm for the
/// small products, OpenBLAS's `cblas_sgemm` for the rest, fused bias + activation epilogues).
///
/// One implementation serves the trainer and the server. Each hidden layer is
/// `Linear → (LayerNorm) → activation`; the output layer is `Linear → outputActivation`.
/// `forward` caches what `backward` needs in preallocated workspaces (sized to the largest batch
/// seen), so steady-state calls allocate nothing. An instance is used by one thread at a time;
/// `replica()` makes another instance that shares the weights but owns its workspaces, for
/// concurrent inference. A forward-only instance (`forwardOnly`, what a server's policy and critic
/// use) keeps no activations for a backward pass: its layers alternate between two buffers, so its
/// workspaces hold two layers' outputs instead of two per layer.
public final class MLP {
    /// Architecture.
    public let spec: MLPSpec
    /// Tensor-name prefix (see `MLPSpec`).
    public let prefix: String
    /// Per layer: weight `[out, in]` and bias `[out]`.
    public let weights: [Parameter]
    public let biases: [Parameter]
    /// Per hidden layer when `spec.layerNorm`: gain and shift.
    public let lnGains: [Parameter]
    public let lnShifts: [Parameter]
    /// LayerNorm epsilon.
    public static let layerNormEpsilon: Float = 1e-5

    private let dims: [Int]
    private var layerCount: Int { dims.count - 1 }
    // Workspaces: input copy, per layer linear output (z), LN output (n), activation output (h),
    // LN statistics (xhat kept in n before affine is not needed: we store normalised values).
    private let inputCopy = FloatBuffer()
    private var z: [FloatBuffer]
    private var xhat: [FloatBuffer]
    private var normed: [FloatBuffer]
    private var rstd: [FloatBuffer]
    private var h: [FloatBuffer]
    private let gradA = FloatBuffer()
    private let gradB = FloatBuffer()
    private let gradInput = FloatBuffer()
    private var lastBatch = 0
    /// Whether this instance only runs forward passes (`backward` is refused): layer `l` writes
    /// its linear output and activation in place into buffer `l % 2`, reading the other one.
    public let forwardOnly: Bool
    /// Which code computes this instance's products and epilogues; nil (the default) follows the
    /// process-wide `DenseKernels.mode`. Per instance so that tests can compare both on one network
    /// without changing what other threads run.
    public var kernelMode: DenseKernels.Mode?
    private var mode: DenseKernels.Mode { kernelMode ?? DenseKernels.mode }
    // libxsmm kernels per layer (forward `z = x Wᵀ`, input gradient `dx = dy W`) and the
    // transposed weights the forward kernels read (`Parameter.transposed()`, one copy for all the
    // replicas sharing the weight), looked up again when the weight's version moves.
    private var forwardKernels: [SmallKernelTable]
    private var inputGradientKernels: [SmallKernelTable]
    private var transposedWeights: [UnsafePointer<Float>?]
    private var transposedVersions: [Int]
    /// Whether the last forward kept its input (`backward` needs it for the first layer's weight
    /// gradient).
    private var inputKept = false

    /// Creates an MLP with PyTorch's default initialisation (uniform ±1/√fan_in for weights and
    /// biases; LayerNorm gain 1, shift 0), drawn from `rng`.
    public convenience init(spec: MLPSpec, prefix: String, rng: inout RNG) {
        let d = spec.dims
        var tensors: [String: Tensor] = [:]
        for (name, shape) in spec.tensorShapes(prefix: prefix) {
            var t = Tensor(shape: shape)
            if name.contains(".ln") {
                if name.hasSuffix(".weight") { t.scalars = [Float](repeating: 1, count: t.count) }
            } else {
                let layer = Int(name.dropFirst(prefix.count + 1).split(separator: ".")[0])!
                let bound = 1 / Float(d[layer]).squareRoot()
                for i in 0..<t.count { t.scalars[i] = rng.uniform(-bound, bound) }
            }
            tensors[name] = t
        }
        try! self.init(spec: spec, prefix: prefix, tensors: tensors)
    }

    /// Creates an MLP from named tensors (as loaded from a model file).
    /// `forwardOnly`: an instance for inference only (see the type's notes); `backward` refuses it.
    public init(spec: MLPSpec, prefix: String, tensors: [String: Tensor], forwardOnly: Bool = false) throws {
        self.spec = spec
        self.prefix = prefix
        self.dims = spec.dims
        var w: [Parameter] = [], b: [Parameter] = [], g: [Parameter] = [], s: [Parameter] = []
        func param(_ name: String, _ shape: [Int]) throws -> Parameter {
            guard let t = tensors[name] else { throw ParameterLoadError.missing(name) }
            guard t.shape == shape else { throw ParameterLoadError.shape(name, expected: shape, found: t.shape) }
            return Parameter(name: name, shape: shape, value: t.scalars)
        }
        let d = spec.dims
        for i in 0..<(d.count - 1) {
            w.append(try param("\(prefix).\(i).weight", [d[i + 1], d[i]]))
            b.append(try param("\(prefix).\(i).bias", [d[i + 1]]))
            if spec.layerNorm && i < d.count - 2 {
                g.append(try param("\(prefix).ln\(i).weight", [d[i + 1]]))
                s.append(try param("\(prefix).ln\(i).bias", [d[i + 1]]))
            }
        }
        weights = w; biases = b; lnGains = g; lnShifts = s
        self.forwardOnly = forwardOnly
        (z, xhat, normed, rstd, h) = MLP.workspaces(layers: d.count - 1, forwardOnly: forwardOnly)
        (forwardKernels, inputGradientKernels, transposedWeights, transposedVersions) = MLP.kernelState(dims: d)
    }

    private init(sharing other: MLP, forwardOnly: Bool) {
        spec = other.spec; prefix = other.prefix; dims = other.dims
        weights = other.weights; biases = other.biases; lnGains = other.lnGains; lnShifts = other.lnShifts
        self.forwardOnly = forwardOnly
        (z, xhat, normed, rstd, h) = MLP.workspaces(layers: dims.count - 1, forwardOnly: forwardOnly)
        (forwardKernels, inputGradientKernels, transposedWeights, transposedVersions) = MLP.kernelState(dims: dims)
    }

    /// Per layer: linear output, LayerNorm's normalised values, its output, its inverse standard
    /// deviations, and the activation. For a backward pass every layer keeps its own; a
    /// forward-only instance needs none of them after the next layer ran, so layer `l`'s linear
    /// output and activation share buffer `l % 2` (the activation is computed in place), and the
    /// LayerNorm buffers are one for all layers.
    private static func workspaces(layers n: Int, forwardOnly: Bool) -> (
        [FloatBuffer], [FloatBuffer], [FloatBuffer], [FloatBuffer], [FloatBuffer]
    ) {
        guard forwardOnly else {
            func each() -> [FloatBuffer] { (0..<n).map { _ in FloatBuffer() } }
            return (each(), each(), each(), each(), each())
        }
        let alternating = [FloatBuffer(), FloatBuffer()]
        let pingPong = (0..<n).map { alternating[$0 % 2] }
        let normalised = FloatBuffer(), normOutput = FloatBuffer(), inverseStd = FloatBuffer()
        return (
            pingPong, Array(repeating: normalised, count: n), Array(repeating: normOutput, count: n),
            Array(repeating: inverseStd, count: n), pingPong
        )
    }

    private static func kernelState(dims d: [Int]) -> ([SmallKernelTable], [SmallKernelTable], [UnsafePointer<Float>?], [Int]) {
        let n = d.count - 1
        // Column-major views of the row-major products: forward `zᵀ (out × rows) = Wᵀᵀ · xᵀ` with
        // the transposed weight `[in, out]`; input gradient `dxᵀ (in × rows) = Wᵀ · dyᵀ` on W itself.
        let forward = (0..<n).map { l in SmallKernelTable(m: d[l + 1], k: d[l], lda: d[l + 1], ldb: d[l], ldc: d[l + 1]) }
        let inputGradient = (0..<n).map { l in SmallKernelTable(m: d[l], k: d[l + 1], lda: d[l], ldb: d[l + 1], ldc: d[l]) }
        return (forward, inputGradient, [UnsafePointer<Float>?](repeating: nil, count: n), [Int](repeating: -1, count: n))
    }

    /// Layer `l`'s weight transposed to `[in, out]` (what the forward libxsmm kernel reads),
    /// looked up only when the weight changed since the last call.
    private func transposedWeight(_ l: Int) -> UnsafePointer<Float> {
        let w = weights[l]
        if transposedVersions[l] != w.version || transposedWeights[l] == nil {
            let t = w.transposed()
            transposedWeights[l] = t.pointer
            transposedVersions[l] = t.version
        }
        return transposedWeights[l]!
    }

    /// `z = x Wᵀ` for layer `l` over `rows` rows (no bias): libxsmm's kernel for the shape when it
    /// is one of the small ones, else OpenBLAS (`split`: a product may be cut over two cores;
    /// false inside a half that already runs on one of them).
    @inline(__always)
    private func linearProduct(layer l: Int, input x: UnsafePointer<Float>, rows: Int, into zp: UnsafeMutablePointer<Float>, split: Bool) {
        let fin = dims[l], fout = dims[l + 1]
        ProductRecorder.note("forward", rows: rows, inner: fin, outputs: fout, activation: activation(l))
        if let kernel = forwardKernels[l].kernel(rows: rows, mode: mode) {
            kernel(transposedWeight(l), x, zp)
            return
        }
        weights[l].value.withUnsafeBufferPointer { wp in
            if split {
                BLAS.sgemm(
                    transA: false, transB: true, m: rows, n: fout, k: fin, x, lda: fin, wp.baseAddress!, ldb: fin, beta: 0,
                    zp, ldc: fout)
            } else {
                SplitGEMM.call(false, true, rows, fout, fin, 1, x, fin, wp.baseAddress!, fin, 0, zp, fout)
            }
        }
    }

    /// A new instance sharing these weights, with its own workspaces (for another thread);
    /// `forwardOnly`: for inference only, with the smaller workspaces (see the type's notes).
    public func replica(forwardOnly: Bool = false) -> MLP { MLP(sharing: self, forwardOnly: forwardOnly) }

    /// Every trainable parameter, in a stable order.
    public var parameters: [Parameter] {
        var p: [Parameter] = []
        var gi = 0
        for i in 0..<weights.count {
            p.append(weights[i]); p.append(biases[i])
            if spec.layerNorm && i < weights.count - 1 { p.append(lnGains[gi]); p.append(lnShifts[gi]); gi += 1 }
        }
        return p
    }

    public var inputDim: Int { dims[0] }
    /// Multiply-adds × 2 of one row's forward pass (the matrix products; activations and norms are
    /// a few percent and left out). The server's work budgets are counted in these.
    public var forwardFlopsPerRow: Double {
        var total = 0.0
        for i in 0..<layerCount { total += 2 * Double(dims[i]) * Double(dims[i + 1]) }
        return total
    }
    public var outputDim: Int { dims[dims.count - 1] }

    private func activation(_ layer: Int) -> Activation {
        layer == layerCount - 1 ? spec.outputActivation : spec.activation
    }
    private func usesNorm(_ layer: Int) -> Bool { spec.layerNorm && layer < layerCount - 1 }

    /// Forward pass over `batch` rows of `input` (`batch × inputDim`, row-major). Returns a pointer
    /// to the `batch × outputDim` output, valid until the next call on this instance.
    @discardableResult
    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        lastBatch = batch
        // A forward-only instance reads the caller's input directly: no backward pass needs it.
        if forwardOnly { return run(from: 0, input: input, batch: batch) }
        inputKept = true
        inputCopy.reserve(batch * dims[0])
        inputCopy.pointer.update(from: input, count: batch * dims[0])
        return run(from: 0, input: UnsafePointer(inputCopy.pointer), batch: batch)
    }

    /// Forward pass whose first layer's linear output `x W₀ᵀ + b₀` (`batch × dims[1]`) the caller
    /// writes into the buffer `fill` receives: for inputs whose first-layer terms are shared across
    /// rows (e.g. one state scored with many candidate next states, each term computed once). The
    /// rest is `forward`. `backward` afterwards gives input gradients only: the first layer's
    /// weight gradient needs the input, which this pass never saw.
    @discardableResult
    public func forward(
        batch: Int, firstLayerLinear fill: (UnsafeMutablePointer<Float>) -> Void
    ) -> UnsafeMutablePointer<Float> {
        lastBatch = batch
        inputKept = false
        z[0].reserve(batch * dims[1])
        fill(z[0].pointer)
        return run(from: 0, input: nil, batch: batch)
    }

    /// Layers `first...` on `input` (nil: layer `first`'s linear output is already in `z[first]`).
    private func run(from first: Int, input: UnsafePointer<Float>?, batch: Int) -> UnsafeMutablePointer<Float> {
        var x = input
        for l in first..<layerCount {
            let fin = dims[l], fout = dims[l + 1]
            z[l].reserve(batch * fout)
            h[l].reserve(batch * fout)
            let zp = z[l].pointer
            if let layerInput = x, !usesNorm(l), SplitGEMM.worthSplitting(rows: batch, work: batch * fin * fout) {
                // Two cores: each computes the linear output and activation of half the rows.
                linearAndActivationInHalves(layer: l, input: layerInput, batch: batch)
                x = UnsafePointer(h[l].pointer)
                continue
            }
            guard let layerInput = x else {
                // The caller wrote z = x Wᵀ + b (first layer of `forward(batch:firstLayerLinear:)`).
                finishLayer(l, batch: batch)
                x = UnsafePointer(h[l].pointer)
                continue
            }
            // z = x Wᵀ, then z += b and h = act(z) in one pass (LayerNorm layers: z += b, LN, act).
            linearProduct(layer: l, input: layerInput, rows: batch, into: zp, split: true)
            biases[l].value.withUnsafeBufferPointer { bp in
                if usesNorm(l) {
                    DenseKernels.biasAndActivation(
                        .identity, z: zp, bias: bp.baseAddress!, h: zp, rows: batch, width: fout, mode: mode)
                } else {
                    DenseKernels.biasAndActivation(
                        activation(l), z: zp, bias: bp.baseAddress!, h: h[l].pointer, rows: batch, width: fout, mode: mode)
                }
            }
            if usesNorm(l) { finishLayer(l, batch: batch) }
            x = UnsafePointer(h[l].pointer)
        }
        return h[layerCount - 1].pointer
    }

    /// `h = act(LN(z))` (or `act(z)` without LayerNorm) from `z[l]`, which already holds `x Wᵀ + b`.
    private func finishLayer(_ l: Int, batch: Int) {
        let fout = dims[l + 1]
        var pre = UnsafePointer(z[l].pointer)
        if usesNorm(l) {
            layerNormForward(layer: l, input: z[l].pointer, batch: batch, width: fout)
            pre = UnsafePointer(normed[l].pointer)
        }
        activation(l).forward(pre, h[l].pointer, count: batch * fout)
    }

    /// `h = act(x Wᵀ + b)` for layer `l`, rows cut in two halves computed on two cores (the same
    /// cut for the same batch, so deterministic; see `SplitGEMM` for the last-bit differences).
    private func linearAndActivationInHalves(layer l: Int, input x: UnsafePointer<Float>, batch: Int) {
        let fin = dims[l], fout = dims[l + 1], act = activation(l)
        let zp = z[l].pointer, hp = h[l].pointer
        // Kernels and the transposed weight are looked up here, on the calling thread: the tables
        // are not shared between threads.
        let mode = self.mode
        let first = forwardKernels[l].kernel(rows: SplitGEMM.half(0, of: batch).count, mode: mode)
        let second = forwardKernels[l].kernel(rows: SplitGEMM.half(1, of: batch).count, mode: mode)
        if first != nil || second != nil { _ = transposedWeight(l) }
        biases[l].value.withUnsafeBufferPointer { bp in
            let bias = bp.baseAddress!
            SplitGEMM.both { part in
                let rows = SplitGEMM.half(part, of: batch)
                guard !rows.isEmpty else { return }
                let zr = zp + rows.lowerBound * fout
                linearProduct(layer: l, input: x + rows.lowerBound * fin, rows: rows.count, into: zr, split: false)
                DenseKernels.biasAndActivation(
                    act, z: zr, bias: bias, h: hp + rows.lowerBound * fout, rows: rows.count, width: fout, mode: mode)
            }
        }
    }

    private func layerNormForward(layer l: Int, input: UnsafeMutablePointer<Float>, batch: Int, width: Int) {
        xhat[l].reserve(batch * width)
        normed[l].reserve(batch * width)
        rstd[l].reserve(batch)
        let gi = l
        let normalised = xhat[l].pointer, out = normed[l].pointer, inverseStd = rstd[l].pointer
        lnGains[gi].value.withUnsafeBufferPointer { g in
            lnShifts[gi].value.withUnsafeBufferPointer { s in
                for r in 0..<batch {
                    let row = input + r * width
                    var mean: Float = 0
                    for j in 0..<width { mean += row[j] }
                    mean /= Float(width)
                    var v: Float = 0
                    for j in 0..<width { let d = row[j] - mean; v += d * d }
                    v /= Float(width)
                    let inv = 1 / (v + MLP.layerNormEpsilon).squareRoot()
                    inverseStd[r] = inv
                    for j in 0..<width {
                        let nv = (row[j] - mean) * inv
                        normalised[r * width + j] = nv
                        out[r * width + j] = nv * g[j] + s[j]
                    }
                }
            }
        }
    }

    /// Convenience forward pass that copies the output into a new array (allocates; not for hot paths).
    public func forward(_ input: [Float], batch: Int) -> [Float] {
        precondition(input.count == batch * inputDim, "MLP \(prefix): input has \(input.count) values, expected \(batch)×\(inputDim)")
        let out = input.withUnsafeBufferPointer { forward($0.baseAddress!, batch: batch) }
        return Array(UnsafeBufferPointer(start: out, count: batch * outputDim))
    }

    /// Backward pass for the most recent `forward`. `gradOutput` is `batch × outputDim`.
    ///
    /// - Parameters:
    ///   - accumulateParameterGradients: add ∂loss/∂θ into each parameter's `grad` (off for pure
    ///     input-gradient uses such as Langevin sampling).
    ///   - computeInputGradient: also compute ∂loss/∂input.
    /// - Returns: ∂loss/∂input (`batch × inputDim`), valid until the next call, or nil when not asked.
    @discardableResult
    public func backward(
        _ gradOutput: UnsafePointer<Float>, accumulateParameterGradients: Bool = true,
        computeInputGradient: Bool = true
    ) -> UnsafeMutablePointer<Float>? {
        precondition(!forwardOnly, "MLP \(prefix): backward on a forward-only instance (it keeps no activations)")
        let batch = lastBatch
        var maxWidth = 0
        for d in dims { maxWidth = max(maxWidth, d) }
        gradA.reserve(batch * maxWidth)
        gradB.reserve(batch * maxWidth)
        var dy = gradA.pointer  // gradient w.r.t. current layer output
        var spare = gradB.pointer
        dy.update(from: gradOutput, count: batch * outputDim)
        for l in stride(from: layerCount - 1, through: 0, by: -1) {
            let fin = dims[l], fout = dims[l + 1]
            let count = batch * fout
            let pre: UnsafePointer<Float> = usesNorm(l) ? UnsafePointer(normed[l].pointer) : UnsafePointer(z[l].pointer)
            // Through the activation (in place); elementwise, so rows can go to two cores.
            if SplitGEMM.worthSplitting(rows: batch, work: batch * fin * fout) {
                let act = activation(l), hp = h[l].pointer, g = dy, mode = self.mode
                SplitGEMM.both { part in
                    let rows = SplitGEMM.half(part, of: batch)
                    let o = rows.lowerBound * fout
                    DenseKernels.activationBackward(
                        act, x: pre + o, y: hp + o, dy: g + o, dx: g + o, count: rows.count * fout, mode: mode)
                }
            } else {
                DenseKernels.activationBackward(activation(l), x: pre, y: h[l].pointer, dy: dy, dx: dy, count: count, mode: mode)
            }
            if usesNorm(l) {
                layerNormBackward(layer: l, dy: dy, batch: batch, width: fout, accumulate: accumulateParameterGradients)
            }
            let x: UnsafePointer<Float> = l == 0 ? UnsafePointer(inputCopy.pointer) : UnsafePointer(h[l - 1].pointer)
            if accumulateParameterGradients {
                precondition(l > 0 || inputKept, "MLP \(prefix): weight gradients after forward(batch:firstLayerLinear:)")
                // dW += dyᵀ x ; db += Σ_rows dy
                weights[l].grad.withUnsafeMutableBufferPointer { gw in
                    BLAS.sgemm(
                        transA: true, transB: false, m: fout, n: fin, k: batch, dy, lda: fout, x, ldb: fin,
                        beta: 1, gw.baseAddress!, ldc: fin)
                }
                biases[l].grad.withUnsafeMutableBufferPointer { gb in
                    for r in 0..<batch {
                        let row = dy + r * fout
                        for j in 0..<fout { gb[j] += row[j] }
                    }
                }
            }
            if l > 0 || computeInputGradient {
                // dx = dy W
                let dst =
                    l == 0
                    ? {
                        gradInput.reserve(batch * fin); return gradInput.pointer
                    }() : spare
                ProductRecorder.note("inputGradient", rows: batch, inner: fout, outputs: fin, activation: activation(l))
                weights[l].value.withUnsafeBufferPointer { wp in
                    if let kernel = inputGradientKernels[l].kernel(rows: batch, mode: mode) {
                        kernel(wp.baseAddress!, dy, dst)  // column-major dxᵀ = Wᵀ · dyᵀ
                    } else {
                        BLAS.sgemm(
                            transA: false, transB: false, m: batch, n: fin, k: fout, dy, lda: fout,
                            wp.baseAddress!, ldb: fin, beta: 0, dst, ldc: fin)
                    }
                }
                if l > 0 { swap(&dy, &spare) }
            }
        }
        return computeInputGradient ? gradInput.pointer : nil
    }

    /// Backward through LayerNorm, in place on `dy` (which holds ∂loss/∂(LN output) on entry and
    /// ∂loss/∂(LN input) on exit).
    private func layerNormBackward(layer l: Int, dy: UnsafeMutablePointer<Float>, batch: Int, width: Int, accumulate: Bool) {
        let normalised = xhat[l].pointer, inverseStd = rstd[l].pointer
        let n = Float(width)
        if accumulate {
            // Only here are the shared parameters' gradients touched: replicas that compute input
            // gradients only (Langevin in the server's workers) never write shared memory.
            lnGains[l].grad.withUnsafeMutableBufferPointer { gainGrad in
                lnShifts[l].grad.withUnsafeMutableBufferPointer { shiftGrad in
                    for r in 0..<batch {
                        let d = dy + r * width
                        let xr = normalised + r * width
                        for j in 0..<width {
                            gainGrad[j] += d[j] * xr[j]
                            shiftGrad[j] += d[j]
                        }
                    }
                }
            }
        }
        lnGains[l].value.withUnsafeBufferPointer { g in
            for r in 0..<batch {
                let d = dy + r * width
                let xr = normalised + r * width
                var sumD: Float = 0, sumDX: Float = 0
                for j in 0..<width {
                    let dxh = d[j] * g[j]
                    sumD += dxh
                    sumDX += dxh * xr[j]
                }
                let inv = inverseStd[r]
                for j in 0..<width {
                    let dxh = d[j] * g[j]
                    d[j] = inv / n * (n * dxh - sumD - xr[j] * sumDX)
                }
            }
        }
    }

    /// Convenience backward that returns the input gradient as an array.
    public func backward(_ gradOutput: [Float], accumulateParameterGradients: Bool = true) -> [Float] {
        precondition(gradOutput.count == lastBatch * outputDim)
        let g = gradOutput.withUnsafeBufferPointer {
            backward($0.baseAddress!, accumulateParameterGradients: accumulateParameterGradients, computeInputGradient: true)!
        }
        return Array(UnsafeBufferPointer(start: g, count: lastBatch * inputDim))
    }
}
