import Foundation
import FlowgateCore

/// The contents of one safetensors file, converted to Float32.
public struct SafetensorsFile: Sendable, Equatable {
    /// Tensors by name.
    public var tensors: [String: Tensor]
    /// The dtype each tensor was stored as (all `.f32` for files flowgate writes).
    public var dtypes: [String: SafetensorsDType]
    /// The `__metadata__` string map (empty when the file has none).
    public var metadata: [String: String]

    /// Creates a file's contents; every tensor is taken to be stored as F32.
    public init(tensors: [String: Tensor], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.dtypes = tensors.mapValues { _ in .f32 }
        self.metadata = metadata
    }

    init(tensors: [String: Tensor], dtypes: [String: SafetensorsDType], metadata: [String: String]) {
        self.tensors = tensors
        self.dtypes = dtypes
        self.metadata = metadata
    }

    /// Tensor names in sorted order.
    public var names: [String] { tensors.keys.sorted() }
}

/// Reading and writing the safetensors format.
///
/// Layout: an 8-byte little-endian `UInt64` header length `N`, `N` bytes of UTF-8 JSON
/// (`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`), then the
/// little-endian data buffer; offsets are relative to the buffer start.
///
/// The reader validates everything before it allocates tensor storage and throws `ModelFileError`
/// naming the file and the problem; it never traps on malformed input. The writer writes F32 only,
/// tensors sorted by name and packed without gaps, the header padded with spaces to a multiple of
/// 8 bytes, exactly as the reference (Rust/Python) implementation does.
public enum Safetensors {
    /// The largest header accepted (100 MiB), far above any real model's.
    public static let maxHeaderLength: UInt64 = 100 << 20
    /// The header key that holds the string metadata map.
    public static let metadataKey = "__metadata__"

    /// Reads and validates the safetensors file at `url`.
    /// - Throws: `ModelFileError`.
    public static func read(contentsOf url: URL) throws -> SafetensorsFile {
        try decode(try readFile(url), path: url.path)
    }

    /// Decodes and validates safetensors bytes; `path` is only used in error messages.
    /// - Throws: `ModelFileError`.
    public static func decode(_ data: Data, path: String = "<memory>") throws -> SafetensorsFile {
        func fail(_ problem: ModelFileError.Problem) -> ModelFileError { ModelFileError(path: path, problem) }
        let fileSize = data.count
        guard fileSize >= 8 else { throw fail(.fileTooShort(size: fileSize)) }
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> SafetensorsFile in
            let headerLength = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
            guard headerLength <= maxHeaderLength, headerLength <= UInt64(fileSize - 8) else {
                throw fail(.headerLengthInvalid(length: headerLength, fileSize: fileSize))
            }
            let bufferStart = 8 + Int(headerLength)
            let bufferSize = fileSize - bufferStart
            let header = try parseHeader(UnsafeRawBufferPointer(rebasing: raw[8..<bufferStart]), fail: fail)

            var entries = header.entries
            entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
            var previousEnd = 0
            var previousName: String?
            for entry in entries {
                guard entry.end <= bufferSize else {
                    throw fail(.offsetsOutOfBounds(tensor: entry.name, begin: entry.begin, end: entry.end, bufferSize: bufferSize))
                }
                if entry.begin < previousEnd, let previousName {
                    throw fail(.overlappingTensors(previousName, entry.name))
                }
                if entry.begin > previousEnd {
                    throw fail(.bufferNotCovered("bytes \(previousEnd)..<\(entry.begin) before tensor '\(entry.name)' are unused"))
                }
                previousEnd = entry.end
                previousName = entry.name
            }
            guard previousEnd == bufferSize else {
                throw fail(.bufferNotCovered("\(bufferSize - previousEnd) trailing bytes after the last tensor"))
            }

            var tensors: [String: Tensor] = [:]
            var dtypes: [String: SafetensorsDType] = [:]
            for entry in entries {
                let count = (entry.end - entry.begin) / entry.dtype.byteSize
                let scalars = entry.dtype.decode(raw, offset: bufferStart + entry.begin, count: count)
                tensors[entry.name] = Tensor(shape: entry.shape, scalars: scalars)
                dtypes[entry.name] = entry.dtype
            }
            return SafetensorsFile(tensors: tensors, dtypes: dtypes, metadata: header.metadata)
        }
    }

    /// Encodes `tensors` (as F32) and optional `metadata` into safetensors bytes.
    /// - Throws: `ModelFileError` (`.invalidInput`) for an empty name or the reserved `__metadata__`.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String]? = nil) throws -> Data {
        let names = tensors.keys.sorted()
        for name in names where name.isEmpty || name == metadataKey {
            throw ModelFileError(path: "<memory>", .invalidInput("invalid tensor name '\(name)'"))
        }
        var header: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        func separator() {
            if !first { header.append(UInt8(ascii: ",")) }
            first = false
        }
        if let metadata {
            separator()
            HeaderJSON.appendQuoted(metadataKey, to: &header)
            header.append(contentsOf: Array(":{".utf8))
            for (i, key) in metadata.keys.sorted().enumerated() {
                if i > 0 { header.append(UInt8(ascii: ",")) }
                HeaderJSON.appendQuoted(key, to: &header)
                header.append(UInt8(ascii: ":"))
                HeaderJSON.appendQuoted(metadata[key]!, to: &header)
            }
            header.append(UInt8(ascii: "}"))
        }
        var offset = 0
        for name in names {
            let tensor = tensors[name]!
            let byteCount = tensor.count * 4
            separator()
            HeaderJSON.appendQuoted(name, to: &header)
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            header.append(contentsOf: Array(#":{"dtype":"F32","shape":[\#(shape)],"data_offsets":[\#(offset),\#(offset + byteCount)]}"#.utf8))
            offset += byteCount
        }
        header.append(UInt8(ascii: "}"))
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }

        var data = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: header)
        for name in names {
            tensors[name]!.scalars.withUnsafeBufferPointer { floats in
                #if _endian(little)
                    data.append(UnsafeBufferPointer(start: floats.baseAddress, count: floats.count))
                #else
                    for value in floats {
                        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
                    }
                #endif
            }
        }
        return data
    }

    /// Encodes `tensors` and writes them to `url` atomically (see `AtomicFile`).
    /// - Throws: `ModelFileError`.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String]? = nil, to url: URL) throws {
        let data: Data
        do {
            data = try encode(tensors, metadata: metadata)
        } catch let error as ModelFileError {
            throw ModelFileError(path: url.path, error.problem)
        }
        try AtomicFile.write(data, to: url)
    }

    /// Reads a whole file, mapping "does not exist" and other failures to `ModelFileError`.
    static func readFile(_ url: URL) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ModelFileError(path: url.path, .missingFile)
        }
        guard !isDirectory.boolValue else {
            throw ModelFileError(path: url.path, .io(operation: "read", message: "is a directory"))
        }
        do {
            return try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw ModelFileError(path: url.path, .io(operation: "read", message: "\(error.localizedDescription)"))
        }
    }
}
