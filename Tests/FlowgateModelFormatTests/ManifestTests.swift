import FlowgateCore
import Foundation
import Testing

@testable import FlowgateModelFormat

@Suite("Manifest")
struct ManifestTests {
    func problem(of manifest: Manifest) -> ModelFileError.Problem? {
        let error = #expect(throws: ModelFileError.self) { try manifest.validate() }
        return error?.problem
    }

    func message(of manifest: Manifest) -> String {
        guard case .invalidManifest(let message) = problem(of: manifest) else { return "<not invalidManifest>" }
        return message
    }

    @Test func encodesPrettySortedAndRoundTrips() throws {
        let manifest = sampleModel().manifest
        let data = try manifest.encoded()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.hasPrefix("{\n"))
        #expect(text.contains(#""actionDim" : 2"#))
        #expect(text.range(of: "\"actionDim\"")!.lowerBound < text.range(of: "\"schemaVersion\"")!.lowerBound)
        #expect(try Manifest.decode(data) == manifest)
    }

    @Test func fixedTensorsMayBeOmitted() throws {
        var object = try JSONSerialization.jsonObject(with: sampleModel().manifest.encoded()) as! [String: Any]
        var networks = object["networks"] as! [String: Any]
        var critic = networks["critic"] as! [String: Any]
        critic.removeValue(forKey: "fixedTensors")
        networks["critic"] = critic
        object["networks"] = networks
        let manifest = try Manifest.decode(JSONSerialization.data(withJSONObject: object))
        #expect(manifest.networks["critic"]?.fixedTensors == [:])
    }

    @Test func newerSchemaVersionFailsClearly() throws {
        // A future manifest may have fields this build does not know; the version check comes first.
        let json = #"{"schemaVersion": 2, "somethingNew": true}"#
        let error = #expect(throws: ModelFileError.self) { try Manifest.decode(Data(json.utf8), path: "m/manifest.json") }
        #expect(error?.problem == .unsupportedSchemaVersion(found: 2, supported: 1))
        #expect(error?.description.contains("m/manifest.json: manifest schemaVersion 2 is newer") == true)
    }

    @Test func badJSONAndMissingKeysNameTheProblem() {
        let bad = #expect(throws: ModelFileError.self) { try Manifest.decode(Data("{\"schemaVersion\": 1,".utf8)) }
        #expect(caseName(bad?.problem) == "invalidManifest")
        #expect(bad?.description.contains("not valid JSON") == true)

        let noVersion = #expect(throws: ModelFileError.self) { try Manifest.decode(Data("{}".utf8)) }
        #expect(noVersion?.problem == .invalidManifest("missing key 'schemaVersion'"))

        let missing = #expect(throws: ModelFileError.self) { try Manifest.decode(Data(#"{"schemaVersion": 1}"#.utf8)) }
        #expect(caseName(missing?.problem) == "invalidManifest")
    }

    @Test func unknownSolverIsRejected() throws {
        let text = String(decoding: try sampleModel().manifest.encoded(), as: UTF8.self)
            .replacingOccurrences(of: #""euler""#, with: #""rk4""#)
        let error = #expect(throws: ModelFileError.self) { try Manifest.decode(Data(text.utf8)) }
        guard case .invalidManifest(let message) = error?.problem else { return }
        #expect(message.contains("sampling.solver"))
    }

    /// The midpoint solver and softmax selection were removed (untested, not selectable per request):
    /// manifests naming them still decode but fail validation with a message naming the key.
    @Test func removedSolverAndSelectionAreRefusedByName() throws {
        var m = sampleModel().manifest
        #expect(throws: Never.self) { try m.validate() }
        m.sampling.solver = .midpoint
        let solver = #expect(throws: ModelFileError.self) { try m.validate() }
        #expect(solver.map { "\($0)" }?.contains("sampling.solver 'midpoint' is not supported") == true, "\(String(describing: solver))")
        m.sampling.solver = .euler
        m.sampling.selection = .softmax
        let selection = #expect(throws: ModelFileError.self) { try m.validate() }
        #expect(selection.map { "\($0)" }?.contains("sampling.selection 'softmax' is not supported") == true, "\(String(describing: selection))")
        let text = String(decoding: try sampleModel().manifest.encoded(), as: UTF8.self)
            .replacingOccurrences(of: #""euler""#, with: #""midpoint""#)
        #expect(throws: ModelFileError.self) { try Manifest.decode(Data(text.utf8)) }
    }

    @Test func consistencyChecks() {
        let good = sampleModel().manifest
        #expect(throws: Never.self) { try good.validate() }

        var m = good
        m.observationDim = 0
        #expect(message(of: m).contains("observationDim"))
        m = good
        m.actionLow = [-1]
        #expect(message(of: m).contains("actionLow has 1 values, expected 2"))
        m = good
        m.actionHigh = [1, -3]
        #expect(message(of: m).contains("actionLow[1]"))
        m = good
        m.actionHigh = [1, .nan]
        #expect(message(of: m).contains("actionHigh[1] is not finite"))
        m = good
        m.normalization.observationStd = [1, 0, 1]
        #expect(message(of: m).contains("observationStd[1]"))
        m = good
        m.normalization.observationMean = [0, 0]
        #expect(message(of: m).contains("observationMean has 2 values"))
        m = good
        m.sampling.steps = 33
        #expect(message(of: m).contains("sampling.steps 33"))
        m = good
        m.sampling.softmaxTemperature = 0
        #expect(message(of: m).contains("softmaxTemperature"))
        m = good
        m.reliability?.calibration = [1, 0.5, 2]
        #expect(message(of: m).contains("not sorted"))
        m = good
        m.reliability?.calibration = [1, .infinity]
        #expect(message(of: m).contains("calibration[1] is not finite"))
        m = good
        m.reliability?.quantile = 1
        #expect(message(of: m).contains("quantile"))
        m = good
        m.networks["critic"]?.file = "../escape.safetensors"
        #expect(message(of: m).contains("plain file name"))
        m = good
        m.networks["critic"]?.file = "policy.safetensors"
        #expect(message(of: m).contains("also used by"))
        m = good
        m.networks["critic"]?.mlps["q1"]?.hiddenDims = [0]
        #expect(message(of: m).contains("layer width 0"))
        m = good
        m.networks["critic"]?.fixedTensors = ["big": [1 << 30, 1 << 30]]
        #expect(message(of: m).contains("invalid shape"))
        m = good
        m.networks["critic"]?.fixedTensors = ["q1.0.weight": [6, 5]]
        #expect(message(of: m).contains("declares tensor 'q1.0.weight' twice"))
        m = good
        m.schemaVersion = 3
        #expect(problem(of: m) == .unsupportedSchemaVersion(found: 3, supported: 1))
    }
}
