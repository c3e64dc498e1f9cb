import FlowgateCommon
import FlowgateCore
import Foundation
import Testing

@testable import FlowgateModelFormat

/// A fresh empty directory under the system temp directory, removed by `cleanUp()`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("flowgate-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func callAsFunction(_ name: String) -> URL { url.appendingPathComponent(name) }

    func cleanUp() { try? FileManager.default.removeItem(at: url) }

    /// File names in the directory (including hidden ones), sorted.
    func contents(_ sub: String? = nil) -> [String] {
        let dir = sub.map { url.appendingPathComponent($0) } ?? url
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }
}

/// A tensor of `shape` with uniform values in [-1, 1).
func randomTensor(_ shape: [Int], using rng: inout SplitMix64) -> Tensor {
    Tensor(shape: shape, scalars: (0..<Tensor.elementCount(shape)).map { _ in Float.random(in: -1..<1, using: &rng) })
}

/// The case name of a problem, e.g. `"invalidHeader"`, for matching cases with payloads.
func caseName(_ problem: ModelFileError.Problem?) -> String {
    guard let problem else { return "nil" }
    return String(String(describing: problem).prefix { $0 != "(" })
}

/// Bitwise equality of float arrays (so -0.0 ≠ 0.0 and NaN == NaN): for lossless file round trips.
func bitwiseEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// Safetensors bytes from a raw header string and data buffer (no validation: for corrupt files).
func rawSafetensors(header: String, buffer: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    var data = Data()
    let header = Array(header.utf8)
    withUnsafeBytes(of: (declaredLength ?? UInt64(header.count)).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: header)
    data.append(contentsOf: buffer)
    return data
}

/// A small but complete model: a flow policy with LayerNorm and Fourier features, a twin critic.
func sampleModel(seed: UInt64 = 42) -> ModelFiles {
    var rng = SplitMix64(seed: seed)
    let policy = NetworkSpec(
        file: "policy.safetensors", kind: "flow-velocity",
        mlps: ["velocity": MLPSpec(inputDim: 9, hiddenDims: [8, 8], outputDim: 2, activation: .silu, layerNorm: true)],
        fixedTensors: ["time.fourier": [2, 2]], options: ["fourierScale": 16])
    let critic = NetworkSpec(
        file: "critic.safetensors", kind: "twin-critic",
        mlps: ["q1": MLPSpec(inputDim: 5, hiddenDims: [6], outputDim: 1), "q2": MLPSpec(inputDim: 5, hiddenDims: [6], outputDim: 1)])
    let manifest = Manifest(
        name: "test-model", modelVersion: "1.0.0", kind: "qipo-flow-policy", observationDim: 3, actionDim: 2,
        actionLow: [-1, -2], actionHigh: [1, 2],
        normalization: .init(observationMean: [0.1, 0.2, 0.3], observationStd: [1, 2, 0.5], rewardScale: 0.1),
        networks: ["policy": policy, "critic": critic],
        sampling: .init(
            steps: 4, candidates: 8, samples: 16, solver: .euler, selection: .argmax, softmaxTemperature: 0.5,
            maxSteps: 32, maxCandidates: 64, maxSamples: 128, maxBatch: 256),
        reliability: .init(threshold: 2.5, quantile: 0.95, calibration: [-1, 0, 0.5, 2.5, 3], heldOutCount: 1000),
        provenance: .init(
            dataset: "hopper-medium-v2", datasetSHA256: String(repeating: "ab", count: 32),
            trainingSteps: ["behavior": 1000, "critic": 2000], seed: 7, gitCommit: "deadbeef",
            date: "2025-01-01T00:00:00Z", flowgateVersion: flowgateVersion, config: #"{"lr": 0.0003}"#))
    var networks: [String: [String: Tensor]] = [:]
    for role in manifest.networks.keys.sorted() {
        var tensors: [String: Tensor] = [:]
        for (name, shape) in manifest.networks[role]!.expectedTensors {
            tensors[name] = randomTensor(shape, using: &rng)
        }
        networks[role] = tensors
    }
    return ModelFiles(manifest: manifest, networks: networks)
}
