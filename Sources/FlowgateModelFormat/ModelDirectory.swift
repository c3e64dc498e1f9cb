import Foundation
import FlowgateCore

/// A model directory on disk: `manifest.json` plus one safetensors file per network.
///
/// Loading is all-or-nothing: `load(at:)` returns a complete, validated `ModelFiles` or throws a
/// `ModelFileError` naming the file (and tensor) at fault.
///
/// Saving never leaves a half-written model where a reader could find it:
/// - a **new** directory is assembled in a hidden temporary sibling (`.<name>.tmp-<random>`), each
///   file and the directory `fsync`ed, then renamed into place in one step;
/// - an **existing** directory is updated file by file with `AtomicFile.write`, network files first
///   and `manifest.json` last. A crash in between can leave new network files next to the old
///   manifest; `load` then either fails validation (shapes changed) or loads a consistent set of
///   shapes, so a reader never sees a torn file. Files the manifest does not name are left alone.
public enum ModelDirectory {
    /// Loads and validates the model directory at `url`.
    /// - Throws: `ModelFileError`.
    public static func load(at url: URL) throws -> ModelFiles {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ModelFileError(path: url.path, .missingFile)
        }
        guard isDirectory.boolValue else {
            throw ModelFileError(path: url.path, .io(operation: "open", message: "not a directory"))
        }
        let manifest = try Manifest.load(from: url.appendingPathComponent(Manifest.fileName))
        var networks: [String: [String: Tensor]] = [:]
        var sizes: [String: Int] = [:]
        for (role, spec) in manifest.networks.sorted(by: { $0.key < $1.key }) {
            let fileURL = url.appendingPathComponent(spec.file)
            let data = try Safetensors.readFile(fileURL)
            let file = try Safetensors.decode(data, path: fileURL.path)
            try ModelFiles.check(file.tensors, dtypes: file.dtypes, against: spec, path: fileURL.path)
            networks[role] = file.tensors
            sizes[role] = data.count
        }
        return ModelFiles(manifest: manifest, networks: networks, fileSizes: sizes)
    }

    /// Loads and validates the model directory at `path`.
    /// - Throws: `ModelFileError`.
    public static func load(atPath path: String) throws -> ModelFiles {
        try load(at: URL(fileURLWithPath: path, isDirectory: true))
    }

    /// Validates `model` and writes it to the directory `url` (see the type's documentation for the
    /// crash-safety guarantees). Parent directories are created as needed.
    /// - Throws: `ModelFileError`; nothing is written when validation fails.
    public static func save(_ model: ModelFiles, to url: URL) throws {
        try model.validate()
        let manifestData = try model.manifest.encoded()
        var files: [(name: String, data: Data)] = []
        for (role, spec) in model.manifest.networks.sorted(by: { $0.key < $1.key }) {
            files.append((spec.file, try networkFile(model, role: role)))
        }
        files.append((Manifest.fileName, manifestData))

        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw ModelFileError(path: url.path, .io(operation: "save", message: "exists and is not a directory"))
            }
            for file in files { try AtomicFile.write(file.data, to: url.appendingPathComponent(file.name)) }
            return
        }

        let parent = url.deletingLastPathComponent()
        try createDirectory(parent)
        let temp = parent.appendingPathComponent(
            AtomicFile.temporaryPrefix(for: url) + String(UInt64.random(in: 0...UInt64.max), radix: 36))
        try createDirectory(temp)
        var renamed = false
        defer { if !renamed { try? FileManager.default.removeItem(at: temp) } }
        for file in files { try AtomicFile.write(file.data, to: temp.appendingPathComponent(file.name)) }
        try AtomicFile.rename(temp.path, to: url.path)
        renamed = true
        try AtomicFile.syncDirectory(parent)
    }

    /// The safetensors bytes of network `role`'s file, with the `__metadata__` every file flowgate
    /// writes carries (`network`, `kind`, `model`, `modelVersion`).
    public static func networkFile(_ model: ModelFiles, role: String) throws -> Data {
        guard let spec = model.manifest.networks[role], let tensors = model.networks[role] else {
            throw ModelFileError(path: Manifest.fileName, .invalidManifest("no network '\(role)'"))
        }
        let metadata = ["network": role, "kind": spec.kind, "model": model.manifest.name, "modelVersion": model.manifest.modelVersion]
        return try Safetensors.encode(tensors, metadata: metadata)
    }

    /// Saves to the directory at `path`; see `save(_:to:)`.
    public static func save(_ model: ModelFiles, toPath path: String) throws {
        try save(model, to: URL(fileURLWithPath: path, isDirectory: true))
    }

    private static func createDirectory(_ url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(path: url.path, .io(operation: "mkdir", message: error.localizedDescription))
        }
    }
}
