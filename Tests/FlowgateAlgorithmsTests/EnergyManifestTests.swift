import FlowgateTestSupport
import FlowgateCore
import Testing

@testable import FlowgateAlgorithms
import FlowgateModelFormat

@Suite("MC-ETM model directory glue")
struct EnergyManifestTests {
    @Test("spec and inference schedule round-trip through the manifest entry")
    func specRoundTrip() throws {
        var rng = RNG(seed: 1)
        let spec = EnergySamplerTests.smallSpec(spherical: true, activation: .silu)
        let model = EnergyTransitionModel(spec: spec, rng: &rng)
        let sampling = EnergySamplingConfig(samples: 8, schedule: LangevinSchedule(steps: 12, initialStepSize: 0.2, finalStepSize: 0.02, noise: 0.005))
        let network = spec.networkSpec(sampling: sampling)
        let tensors = model.fileTensors()
        #expect(Set(network.expectedTensors.map(\.name)) == Set(tensors.keys))
        let decoded = try EnergyModelSpec.decode(network: network, tensors: tensors, observationDim: 4, actionDim: 2)
        #expect(decoded.spec == spec)
        #expect(decoded.sampling.schedule == sampling.schedule)
        #expect(throws: ModelFileError.self) {
            try EnergyModelSpec.decode(network: network, tensors: tensors, observationDim: 5, actionDim: 2)
        }
        // Unstaged manifests carry no firstProposals option; staged ones round-trip it.
        #expect(network.options?["firstProposals"] == nil && decoded.sampling.firstProposals == 0)
        let staged = spec.networkSpec(sampling: EnergySamplingConfig(samples: 1, proposals: 384, firstProposals: 128))
        let back = try EnergyModelSpec.decode(network: staged, tensors: tensors, observationDim: 4, actionDim: 2)
        #expect(back.sampling.proposals == 384 && back.sampling.firstProposals == 128)
    }

    @Test("nearest-source proposals: the bank's sources and the option round-trip; a manifest asking for them without sources, or a bad source tensor, is refused by name")
    func nearestRoundTrip() throws {
        var rng = RNG(seed: 2)
        let spec = EnergySamplerTests.smallSpec(spherical: true, activation: .silu)
        let model = EnergyTransitionModel(spec: spec, rng: &rng)
        model.latentBank = randomArray(10 * 3, seed: 3)
        let sampling = EnergySamplingConfig(samples: 1, schedule: .inference, proposals: 4, nearest: true)
        // No sources yet: the file and the manifest name none, and asking for nearest is refused.
        #expect(!model.hasBankSources && model.fileTensors()[EnergyModelSpec.bankSourcesTensor] == nil)
        var without = model.networkSpec(sampling: sampling)
        #expect(without.fixedTensors[EnergyModelSpec.bankSourcesTensor] == nil && without.options?["nearestProposals"] == nil)
        without.options?["nearestProposals"] = 1
        #expect(throws: ModelFileError.self) {
            try EnergyModelSpec.decode(network: without, tensors: model.fileTensors(), observationDim: 4, actionDim: 2)
        }
        model.bankSources = randomArray(10 * 6, seed: 4)
        let network = model.networkSpec(sampling: sampling)
        let tensors = model.fileTensors()
        #expect(network.fixedTensors[EnergyModelSpec.bankSourcesTensor] == [10, 6])
        #expect(Set(network.expectedTensors.map(\.name)) == Set(tensors.keys))
        let decoded = try EnergyModelSpec.decode(network: network, tensors: tensors, observationDim: 4, actionDim: 2)
        #expect(decoded.sampling.nearest && decoded.sampling.proposals == 4)
        // Through a whole model directory: the sources come back, and the checker uses them.
        let files = ModelFiles(
            manifest: Manifest(
                name: "n", modelVersion: "1", kind: "energy-only", observationDim: 4, actionDim: 2, actionLow: [-1, -1],
                actionHigh: [1, 1], normalization: .init(observationMean: [0, 0, 0, 0], observationStd: [1, 1, 1, 1]),
                networks: [EnergyModelSpec.role: network],
                sampling: .init(steps: 1, candidates: 1, samples: 1, maxSteps: 1, maxCandidates: 1, maxSamples: 1, maxBatch: 1),
                provenance: .init(dataset: "d", trainingSteps: [:], seed: 0, gitCommit: "x", date: "d", flowgateVersion: "0")),
            networks: [EnergyModelSpec.role: tensors])
        let loaded = try #require(try EnergyTransitionModel.load(from: files))
        #expect(loaded.model.bankSources == model.bankSources && loaded.sampling.nearest)
        let factory = try #require(try EnergyTransitionModel.checkerFactory(files))
        let checker = try #require(factory() as? EnergyTransitionChecker)
        #expect(checker.sampler.usesNearestProposals)
        // A source tensor of the wrong shape, or with a NaN, names the tensor.
        for bad in [Tensor(shape: [9, 6], scalars: randomArray(54, seed: 5)), Tensor(shape: [10, 6], scalars: [.nan] + randomArray(59, seed: 6))] {
            var t = tensors
            t[EnergyModelSpec.bankSourcesTensor] = bad
            var f = files
            f.networks[EnergyModelSpec.role] = t
            f.manifest.networks[EnergyModelSpec.role]?.fixedTensors[EnergyModelSpec.bankSourcesTensor] = bad.shape
            do {
                _ = try EnergyTransitionModel.load(from: f)
                Issue.record("bank sources \(bad.shape) accepted")
            } catch let error as ModelFileError {
                #expect("\(error)".contains(EnergyModelSpec.bankSourcesTensor), "\(error)")
            }
        }
        var two = network
        two.options?["nearestProposals"] = 2
        #expect(throws: ModelFileError.self) { try EnergyModelSpec.decode(network: two, tensors: tensors, observationDim: 4, actionDim: 2) }
    }

    @Test("count options of a hostile manifest are refused with their name, not converted (1e30 would trap)")
    func countOptionsAreChecked() throws {
        var rng = RNG(seed: 1)
        let spec = EnergySamplerTests.smallSpec(spherical: true, activation: .silu)
        let tensors = EnergyTransitionModel(spec: spec, rng: &rng).fileTensors()
        for (name, value) in [("proposals", 1e30), ("firstProposals", -1), ("langevinSteps", 2.5), ("firstProposals", 2e6)] {
            var network = spec.networkSpec()
            network.options?[name] = value
            do {
                _ = try EnergyModelSpec.decode(network: network, tensors: tensors, observationDim: 4, actionDim: 2)
                Issue.record("\(name) = \(value) was accepted")
            } catch let error as ModelFileError {
                #expect("\(error)".contains(name), "\(error)")
            }
        }
    }

    @Test("a staged checker stops rows at the calibration's exit energy, and the manifest keeps it")
    func stagedChecker() {
        var rng = RNG(seed: 5)
        let spec = EnergySamplerTests.smallSpec(spherical: true, activation: .relu)
        let model = EnergyTransitionModel(spec: spec, rng: &rng)
        model.latentBank = randomArray(40 * 3, seed: 6)
        let schedule = LangevinSchedule(steps: 0, initialStepSize: 0.1, noise: 0.01)
        let sampling = EnergySamplingConfig(samples: 1, schedule: schedule, proposals: 30, firstProposals: 8)
        var calibration = ReliabilityCalibration(heldOutEMin: (0..<100).map { Float($0) / 100 - 0.5 }, quantile: 0.9)
        #expect(EnergyTransitionChecker(model: model, sampling: sampling, calibration: calibration).sampler.exitEnergy == calibration.threshold)
        calibration.exitEnergy = calibration.threshold - 0.2
        let checker = EnergyTransitionChecker(model: model, sampling: sampling, calibration: calibration)
        #expect(checker.sampler.exitEnergy == calibration.threshold - 0.2)
        #expect(checker.splitProposals == 8)
        // Never above the threshold, whatever the manifest says.
        calibration.exitEnergy = calibration.threshold + 1
        #expect(calibration.stageExit == calibration.threshold)
        let back = ReliabilityCalibration(manifest: calibration.manifestValue)
        #expect(back.exitEnergy == calibration.exitEnergy)
        // Unstaged sampling ignores the calibration's exit.
        var unstaged = sampling
        unstaged.firstProposals = 0
        #expect(EnergyTransitionChecker(model: model, sampling: unstaged, calibration: calibration).sampler.exitEnergy == nil)
    }

    @Test("the server's checker gives the sampler's E_min and the calibration's verdicts")
    func checker() {
        var rng = RNG(seed: 2)
        let spec = EnergySamplerTests.smallSpec(spherical: true, activation: .relu)
        let model = EnergyTransitionModel(spec: spec, rng: &rng)
        let sampling = EnergySamplingConfig(samples: 4, schedule: LangevinSchedule(steps: 5, initialStepSize: 0.1, noise: 0.01))
        let calibration = ReliabilityCalibration(heldOutEMin: (0..<100).map { Float($0) / 100 - 0.5 }, quantile: 0.9)
        let checker = EnergyTransitionChecker(model: model, sampling: sampling, calibration: calibration)
        let s = randomArray(3 * 4, seed: 3), a = randomArray(3 * 2, seed: 4)
        var rngs = (0..<3).map { RNG(seed: 10 + UInt64($0)) }
        var copy = rngs
        let e = checker.minimumEnergy(observations: s, actions: a, count: 3, samples: 4, rngs: &rngs)
        let seeds = (0..<3).map { copy[$0].next() }
        let direct = EnergySampler(model: model, config: sampling).evaluate(observations: s, actions: a, seeds: seeds)
        #expect(e == direct.eMin)
        #expect(checker.threshold == calibration.threshold)
        #expect(checker.confidence(energy: e[0]) == calibration.confidence(e[0]))
        let manifest = calibration.manifestValue
        let back = ReliabilityCalibration(manifest: manifest)  // the manifest stores the quantile as Float
        #expect(back.threshold == calibration.threshold && back.table == calibration.table && back.heldOutCount == 100)
        #expect(abs(back.quantile - calibration.quantile) < 1e-6)
    }
}
