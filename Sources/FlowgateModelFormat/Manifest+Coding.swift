import Foundation

/// Reading and writing `manifest.json`.
extension Manifest {
    /// Decodes and validates a manifest; `path` names the file in errors.
    ///
    /// The schema version is read first, so a manifest from a newer flowgate fails with
    /// `.unsupportedSchemaVersion` rather than with whatever field it added.
    /// - Throws: `ModelFileError` (`.invalidManifest`, `.unsupportedSchemaVersion`).
    public static func decode(_ data: Data, path: String = Manifest.fileName) throws -> Manifest {
        struct VersionProbe: Decodable { var schemaVersion: Int? }
        let decoder = JSONDecoder()
        let probe: VersionProbe
        do {
            probe = try decoder.decode(VersionProbe.self, from: data)
        } catch {
            throw ModelFileError(path: path, .invalidManifest(describe(error)))
        }
        guard let version = probe.schemaVersion else {
            throw ModelFileError(path: path, .invalidManifest("missing key 'schemaVersion'"))
        }
        guard version <= currentSchemaVersion else {
            throw ModelFileError(path: path, .unsupportedSchemaVersion(found: version, supported: currentSchemaVersion))
        }
        let manifest: Manifest
        do {
            manifest = try decoder.decode(Manifest.self, from: data)
        } catch {
            throw ModelFileError(path: path, .invalidManifest(describe(error)))
        }
        try manifest.validate(path: path)
        return manifest
    }

    /// Reads, decodes and validates the manifest file at `url`.
    /// - Throws: `ModelFileError`.
    public static func load(from url: URL) throws -> Manifest {
        try decode(try Safetensors.readFile(url), path: url.path)
    }

    /// The manifest as pretty-printed JSON with sorted keys and a trailing newline, after validating it.
    /// - Throws: `ModelFileError` when the manifest is invalid.
    public func encoded() throws -> Data {
        try validate()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            var data = try encoder.encode(self)
            data.append(UInt8(ascii: "\n"))
            return data
        } catch {
            throw ModelFileError(path: Manifest.fileName, .invalidManifest("cannot encode: \(error)"))
        }
    }

    /// A one-line description of a decoding failure, naming the offending key path.
    static func describe(_ error: any Error) -> String {
        func keyPath(_ path: [any CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
                .trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing key '\(keyPath(context.codingPath + [key]))'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "'\(keyPath(context.codingPath))': \(context.debugDescription)"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                let underlying = context.underlyingError.map { " (\($0))" } ?? ""
                return "not valid JSON: \(context.debugDescription)\(underlying)"
            }
            return "'\(keyPath(context.codingPath))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
