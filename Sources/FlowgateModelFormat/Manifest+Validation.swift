import FlowgateCore

/// Internal-consistency checks of a manifest. Whether each MLP's dimensions fit the algorithm
/// (e.g. a policy's input is `observationDim + actionDim + timeEmbedding`) is checked by the
/// algorithm layer, not here.
extension Manifest {
    /// The largest single dimension accepted in an MLP or fixed tensor shape.
    public static let maxDimension = 1 << 24
    /// The largest element count accepted for one tensor.
    public static let maxTensorElements = 1 << 31

    /// Checks the manifest; `path` names the file in the error.
    /// - Throws: `ModelFileError` with `.unsupportedSchemaVersion` or `.invalidManifest`.
    public func validate(path: String = Manifest.fileName) throws {
        if let problem = firstProblem() {
            throw ModelFileError(path: path, problem)
        }
    }

    /// The first problem found, or nil when the manifest is consistent.
    func firstProblem() -> ModelFileError.Problem? {
        if schemaVersion > Manifest.currentSchemaVersion {
            return .unsupportedSchemaVersion(found: schemaVersion, supported: Manifest.currentSchemaVersion)
        }
        var problems = Problems()
        problems.check(schemaVersion >= 1, "schemaVersion \(schemaVersion) must be at least 1")
        problems.check(!name.isEmpty, "name is empty")
        problems.check(!modelVersion.isEmpty, "modelVersion is empty")
        problems.check(!kind.isEmpty, "kind is empty")
        problems.check(observationDim > 0, "observationDim \(observationDim) must be positive")
        problems.check(actionDim > 0, "actionDim \(actionDim) must be positive")
        problems.checkVector(actionLow, "actionLow", count: actionDim)
        problems.checkVector(actionHigh, "actionHigh", count: actionDim)
        if actionLow.count == actionHigh.count, let i = actionLow.indices.first(where: { !(actionLow[$0] < actionHigh[$0]) }) {
            problems.add("actionLow[\(i)] = \(actionLow[i]) is not below actionHigh[\(i)] = \(actionHigh[i])")
        }
        problems.checkVector(normalization.observationMean, "normalization.observationMean", count: observationDim)
        problems.checkVector(normalization.observationStd, "normalization.observationStd", count: observationDim)
        if let i = normalization.observationStd.firstIndex(where: { !($0 > 0) }) {
            problems.add("normalization.observationStd[\(i)] = \(normalization.observationStd[i]) must be positive")
        }
        problems.check(
            normalization.rewardScale.isFinite && normalization.rewardScale > 0,
            "normalization.rewardScale \(normalization.rewardScale) must be finite and positive")
        checkNetworks(&problems)
        checkSampling(&problems)
        if let reliability { checkReliability(reliability, &problems) }
        for (trainer, steps) in provenance.trainingSteps.sorted(by: { $0.key < $1.key }) where steps < 0 {
            problems.add("provenance.trainingSteps[\(trainer)] = \(steps) is negative")
        }
        return problems.first.map { .invalidManifest($0) }
    }

    private func checkNetworks(_ problems: inout Problems) {
        problems.check(!networks.isEmpty, "networks is empty")
        var files: [String: String] = [:]
        for (role, network) in networks.sorted(by: { $0.key < $1.key }) {
            let at = "networks.\(role)"
            problems.check(!role.isEmpty, "a network has an empty name")
            problems.check(!network.kind.isEmpty, "\(at).kind is empty")
            let file = network.file
            problems.check(
                !file.isEmpty && !file.contains("/") && !file.hasPrefix(".") && file != Manifest.fileName,
                "\(at).file '\(file)' must be a plain file name inside the model directory")
            if let other = files.updateValue(role, forKey: file) {
                problems.add("\(at).file '\(file)' is also used by networks.\(other)")
            }
            problems.check(!network.mlps.isEmpty || !network.fixedTensors.isEmpty, "\(at) has no tensors")
            for (key, mlp) in network.mlps.sorted(by: { $0.key < $1.key }) {
                problems.check(!key.isEmpty, "\(at).mlps has an empty name")
                if let bad = mlp.dims.first(where: { $0 <= 0 || $0 > Manifest.maxDimension }) {
                    problems.add("\(at).mlps.\(key) has layer width \(bad), outside 1...\(Manifest.maxDimension)")
                } else {
                    let d = mlp.dims
                    if let i = d.indices.dropLast().first(where: { d[$0] * d[$0 + 1] > Manifest.maxTensorElements }) {
                        problems.add("\(at).mlps.\(key) layer \(i) has more than \(Manifest.maxTensorElements) weights")
                    }
                }
            }
            for (name, shape) in network.fixedTensors.sorted(by: { $0.key < $1.key }) {
                problems.check(!name.isEmpty && name != Safetensors.metadataKey, "\(at).fixedTensors has an invalid name '\(name)'")
                if Manifest.checkedElementCount(shape) == nil {
                    problems.add("\(at).fixedTensors.\(name) has invalid shape \(shape)")
                }
            }
            if problems.first == nil {
                var names = Set<String>()
                for (name, _) in network.expectedTensors where !names.insert(name).inserted {
                    problems.add("\(at) declares tensor '\(name)' twice (an MLP prefix clashes with another tensor)")
                }
            }
            for (option, value) in (network.options ?? [:]).sorted(by: { $0.key < $1.key }) where !value.isFinite {
                problems.add("\(at).options.\(option) is not finite")
            }
        }
    }

    private func checkSampling(_ problems: inout Problems) {
        let s = sampling
        problems.check(s.maxSteps >= 1, "sampling.maxSteps \(s.maxSteps) must be at least 1")
        problems.check(s.maxCandidates >= 1, "sampling.maxCandidates \(s.maxCandidates) must be at least 1")
        problems.check(s.maxSamples >= 0, "sampling.maxSamples \(s.maxSamples) must not be negative")
        problems.check(s.maxBatch >= 1, "sampling.maxBatch \(s.maxBatch) must be at least 1")
        problems.check((1...max(1, s.maxSteps)).contains(s.steps), "sampling.steps \(s.steps) must be in 1...maxSteps (\(s.maxSteps))")
        problems.check(
            (1...max(1, s.maxCandidates)).contains(s.candidates),
            "sampling.candidates \(s.candidates) must be in 1...maxCandidates (\(s.maxCandidates))")
        problems.check(
            (0...max(0, s.maxSamples)).contains(s.samples),
            "sampling.samples \(s.samples) must be in 0...maxSamples (\(s.maxSamples))")
        problems.check(
            s.solver == .euler,
            "sampling.solver '\(s.solver.rawValue)' is not supported: flowgate integrates the flow with Euler steps (request more steps instead)")
        problems.check(
            s.selection == .argmax,
            "sampling.selection '\(s.selection.rawValue)' is not supported: flowgate serves the candidate with the highest Q")
        problems.check(
            s.softmaxTemperature.isFinite && s.softmaxTemperature > 0,
            "sampling.softmaxTemperature \(s.softmaxTemperature) must be finite and positive")
    }

    private func checkReliability(_ r: Reliability, _ problems: inout Problems) {
        problems.check(r.threshold.isFinite, "reliability.threshold is not finite")
        problems.check(r.quantile > 0 && r.quantile < 1, "reliability.quantile \(r.quantile) must be in (0, 1)")
        problems.check(r.heldOutCount >= 0, "reliability.heldOutCount \(r.heldOutCount) is negative")
        if let exit = r.exitEnergy {
            problems.check(exit.isFinite && exit <= r.threshold, "reliability.exitEnergy \(exit) must be finite and at most the threshold \(r.threshold)")
        }
        if let i = r.calibration.firstIndex(where: { !$0.isFinite }) {
            problems.add("reliability.calibration[\(i)] is not finite")
        } else if let i = r.calibration.indices.dropFirst().first(where: { r.calibration[$0 - 1] > r.calibration[$0] }) {
            problems.add("reliability.calibration is not sorted (element \(i) is below element \(i - 1))")
        }
    }

    /// The element count of `shape`, or nil when a dimension is negative or too large, or the
    /// count exceeds `maxTensorElements`.
    static func checkedElementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0, dimension <= maxDimension else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= maxTensorElements else { return nil }
            count = product
        }
        return count
    }
}

/// Collects validation failures; only the first is reported.
private struct Problems {
    var first: String?
    mutating func add(_ message: String) { if first == nil { first = message } }
    mutating func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { add(message()) }
    }
    mutating func checkVector(_ values: [Float], _ name: String, count: Int) {
        check(values.count == count, "\(name) has \(values.count) values, expected \(count)")
        if let i = values.firstIndex(where: { !$0.isFinite }) { add("\(name)[\(i)] is not finite") }
    }
}
