import FlowgateCore
import Foundation
import Testing

@testable import FlowgateModelFormat

@Suite("ModelDirectory")
struct ModelDirectoryTests {
    /// Saves the sample model into a fresh directory, applies `corrupt`, and returns the load error.
    func loadError(_ corrupt: (URL) throws -> Void) throws -> ModelFileError? {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let model = dir("model")
        try ModelDirectory.save(sampleModel(), to: model)
        try corrupt(model)
        return #expect(throws: ModelFileError.self) { try ModelDirectory.load(at: model) }
    }

    /// Rewrites one network file of `model` with `edit` applied to its tensors.
    func rewrite(_ model: URL, file: String, _ edit: (inout [String: Tensor]) -> Void) throws {
        var tensors = try Safetensors.read(contentsOf: model.appendingPathComponent(file)).tensors
        edit(&tensors)
        try Safetensors.write(tensors, to: model.appendingPathComponent(file))
    }

    @Test func roundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let original = sampleModel()
        try ModelDirectory.save(original, to: dir("nested/model"))
        #expect(dir.contents("nested") == ["model"])
        #expect(dir.contents("nested/model") == ["critic.safetensors", "manifest.json", "policy.safetensors"])
        let loaded = try ModelDirectory.load(atPath: dir("nested/model").path)
        #expect(loaded.manifest == original.manifest)
        #expect(loaded.networks == original.networks)
        #expect(loaded.tensors(of: "policy")?["velocity.ln0.weight"]?.shape == [8])

        let metadata = try Safetensors.read(contentsOf: dir("nested/model/policy.safetensors")).metadata
        #expect(metadata["network"] == "policy")
        #expect(metadata["model"] == "test-model")
    }

    @Test func saveOverExistingDirectoryReplacesFiles() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        try ModelDirectory.save(sampleModel(seed: 1), to: dir("m"))
        try Data("keep".utf8).write(to: dir("m/README.md"))
        var second = sampleModel(seed: 2)
        second.manifest.modelVersion = "2.0.0"
        try ModelDirectory.save(second, to: dir("m"))
        let loaded = try ModelDirectory.load(at: dir("m"))
        #expect(loaded.manifest.modelVersion == "2.0.0")
        #expect(loaded.networks == second.networks)
        #expect(dir.contents("m") == ["README.md", "critic.safetensors", "manifest.json", "policy.safetensors"])
        #expect(dir.contents().filter { AtomicFile.isTemporaryName($0) }.isEmpty)
    }

    @Test func invalidModelIsNotWritten() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        var model = sampleModel()
        model.networks["critic"]?["q1.0.bias"] = Tensor(shape: [6], repeating: .nan)
        let error = #expect(throws: ModelFileError.self) { try ModelDirectory.save(model, to: dir("m")) }
        #expect(error?.problem == .nonFinite(tensor: "q1.0.bias", index: 0))
        #expect(error?.path == "critic.safetensors")
        #expect(dir.contents().isEmpty)
    }

    @Test func summaryCountsParametersAndBytes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        try ModelDirectory.save(sampleModel(), to: dir("m"))
        let summary = try ModelDirectory.load(at: dir("m")).summary()
        #expect(summary.networks.map(\.name) == ["critic", "policy"])
        let critic = summary.networks[0]
        #expect(critic.parameterCount == 2 * (5 * 6 + 6 + 6 * 1 + 1))
        #expect(critic.mlps.map(\.dims) == [[5, 6, 1], [5, 6, 1]])
        let policy = summary.networks[1]
        #expect(policy.parameterCount == (9 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2) + 2 * (8 + 8))
        #expect(policy.fixedScalarCount == 4)
        let size = try FileManager.default.attributesOfItem(atPath: dir("m/policy.safetensors").path)[.size] as? Int
        #expect(policy.byteSize == size)
        #expect(summary.fileCount == 3)
        #expect(summary.totalParameterCount == critic.parameterCount + policy.parameterCount)
    }

    @Test func missingDirectoryAndManifest() throws {
        let missingDir = #expect(throws: ModelFileError.self) { try ModelDirectory.load(atPath: "/nonexistent/model") }
        #expect(missingDir?.problem == .missingFile)
        let error = try loadError { try FileManager.default.removeItem(at: $0.appendingPathComponent("manifest.json")) }
        #expect(error?.problem == .missingFile)
        #expect(error?.path.hasSuffix("model/manifest.json") == true)
    }

    @Test func manifestWithBadJSON() throws {
        let error = try loadError { try Data("{ not json".utf8).write(to: $0.appendingPathComponent("manifest.json")) }
        #expect(caseName(error?.problem) == "invalidManifest")
        #expect(error?.path.hasSuffix("manifest.json") == true)
    }

    @Test func unsupportedSchemaVersion() throws {
        let error = try loadError { model in
            let url = model.appendingPathComponent("manifest.json")
            let text = try String(contentsOf: url, encoding: .utf8)
                .replacingOccurrences(of: #""schemaVersion" : 1"#, with: #""schemaVersion" : 7"#)
            try Data(text.utf8).write(to: url)
        }
        #expect(error?.problem == .unsupportedSchemaVersion(found: 7, supported: 1))
    }

    @Test func missingNetworkFile() throws {
        let error = try loadError { try FileManager.default.removeItem(at: $0.appendingPathComponent("critic.safetensors")) }
        #expect(error?.problem == .missingFile)
        #expect(error?.path.hasSuffix("critic.safetensors") == true)
    }

    @Test func nanWeights() throws {
        let error = try loadError { model in
            try rewrite(model, file: "policy.safetensors") { $0["velocity.1.weight"]!.scalars[5] = .nan }
        }
        #expect(error?.problem == .nonFinite(tensor: "velocity.1.weight", index: 5))
        #expect(error?.description.contains("policy.safetensors: tensor 'velocity.1.weight' has a non-finite value") == true)
    }

    @Test func missingTensor() throws {
        let error = try loadError { model in
            try rewrite(model, file: "critic.safetensors") { $0["q2.1.bias"] = nil }
        }
        #expect(error?.problem == .missingTensor("q2.1.bias"))
    }

    @Test func unexpectedTensor() throws {
        let error = try loadError { model in
            try rewrite(model, file: "critic.safetensors") { $0["q3.0.bias"] = Tensor(shape: [1]) }
        }
        #expect(error?.problem == .unexpectedTensor("q3.0.bias"))
    }

    @Test func wrongShape() throws {
        let error = try loadError { model in
            try rewrite(model, file: "policy.safetensors") { $0["time.fourier"] = Tensor(shape: [4]) }
        }
        #expect(error?.problem == .wrongShape(tensor: "time.fourier", expected: [2, 2], actual: [4]))
    }

    @Test func wrongDType() throws {
        let error = try loadError { model in
            // Replace the critic file with one whose tensors are all F64 (Python's default dtype).
            let spec = sampleModel().manifest.networks["critic"]!
            var header = "{"
            var offset = 0
            for (i, (name, shape)) in spec.expectedTensors.enumerated() {
                let bytes = Tensor.elementCount(shape) * 8
                header += "\(i > 0 ? "," : "")\"\(name)\":{\"dtype\":\"F64\",\"shape\":\(shape),\"data_offsets\":[\(offset),\(offset + bytes)]}"
                offset += bytes
            }
            header += "}"
            let data = rawSafetensors(header: header, buffer: Array(repeating: 0, count: offset))
            try data.write(to: model.appendingPathComponent("critic.safetensors"))
        }
        #expect(error?.problem == .wrongDType(tensor: "q1.0.weight", expected: "F32", actual: "F64"))
    }

    @Test func truncatedNetworkFile() throws {
        let error = try loadError { model in
            let url = model.appendingPathComponent("policy.safetensors")
            try Data(contentsOf: url).prefix(100).write(to: url)
        }
        #expect(error?.path.hasSuffix("policy.safetensors") == true)
        #expect(["headerLengthInvalid", "offsetsOutOfBounds", "invalidHeader"].contains(caseName(error?.problem)))
    }
}
