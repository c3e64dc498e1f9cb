import FlowgateCore

/// A complete, validated model: its manifest and every network's tensors.
///
/// `ModelDirectory.load(at:)` returns one only when every file is valid; the trainer builds one to
/// hand to `ModelDirectory.save(_:to:)`, which validates it the same way before writing anything.
public struct ModelFiles: Sendable {
    /// The model's manifest.
    public var manifest: Manifest
    /// Network role (a key of `manifest.networks`) → tensor name → tensor.
    public var networks: [String: [String: Tensor]]
    /// Network role → size of its file on disk in bytes (filled by `ModelDirectory.load`).
    public var fileSizes: [String: Int]

    /// Creates a model from a manifest and its networks' tensors (not validated until saved).
    public init(manifest: Manifest, networks: [String: [String: Tensor]], fileSizes: [String: Int] = [:]) {
        self.manifest = manifest
        self.networks = networks
        self.fileSizes = fileSizes
    }

    /// The tensors of network `role`, e.g. `model.tensors(of: "policy")`.
    public func tensors(of role: String) -> [String: Tensor]? { networks[role] }

    /// Checks the manifest and that each network holds exactly the tensors its spec describes,
    /// with the right shapes and finite values.
    /// - Throws: `ModelFileError`; `path` is the network's file name (or the manifest's).
    public func validate() throws {
        try manifest.validate()
        for role in networks.keys.sorted() where manifest.networks[role] == nil {
            throw ModelFileError(path: Manifest.fileName, .invalidInput("network '\(role)' is not in the manifest"))
        }
        for (role, spec) in manifest.networks.sorted(by: { $0.key < $1.key }) {
            guard let tensors = networks[role] else {
                throw ModelFileError(path: spec.file, .invalidInput("no tensors given for network '\(role)'"))
            }
            try ModelFiles.check(tensors, dtypes: [:], against: spec, path: spec.file)
        }
    }

    /// Checks a network file's tensors against its spec: every expected tensor present, F32, of the
    /// expected shape and finite; no other tensors. `dtypes` defaults to F32 for missing entries.
    static func check(
        _ tensors: [String: Tensor], dtypes: [String: SafetensorsDType], against spec: NetworkSpec, path: String
    ) throws {
        let expected = spec.expectedTensors
        for (name, shape) in expected {
            guard let tensor = tensors[name] else { throw ModelFileError(path: path, .missingTensor(name)) }
            let dtype = dtypes[name] ?? .f32
            guard dtype == .f32 else {
                throw ModelFileError(path: path, .wrongDType(tensor: name, expected: "F32", actual: dtype.rawValue))
            }
            guard tensor.shape == shape else {
                throw ModelFileError(path: path, .wrongShape(tensor: name, expected: shape, actual: tensor.shape))
            }
            if let index = tensor.scalars.firstIndex(where: { !$0.isFinite }) {
                throw ModelFileError(path: path, .nonFinite(tensor: name, index: index))
            }
        }
        let expectedNames = Set(expected.map(\.name))
        if let extra = tensors.keys.sorted().first(where: { !expectedNames.contains($0) }) {
            throw ModelFileError(path: path, .unexpectedTensor(extra))
        }
    }
}
