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
