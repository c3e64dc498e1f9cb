/// An error reading, validating or writing a model file or model directory.
///
/// Every error names the file it is about (`path`) and what is wrong with it (`problem`), so the
/// one-line `description` is enough for a log line or a CLI error message.
public struct ModelFileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong.
    public enum Problem: Equatable, Sendable {
        /// The file or directory does not exist.
        case missingFile
        /// An operating-system call failed (`operation` is the call, `message` its `strerror`).
        case io(operation: String, message: String)
        /// The file is shorter than the 8-byte safetensors header length.
        case fileTooShort(size: Int)
        /// The declared header length is larger than the file or than `Safetensors.maxHeaderLength`.
        case headerLengthInvalid(length: UInt64, fileSize: Int)
        /// The header is not valid UTF-8 JSON, not an object, or an entry is malformed.
        case invalidHeader(String)
        /// A tensor name appears twice in the header (or twice across a model's files).
        case duplicateTensor(String)
        /// A tensor uses a dtype the reader does not convert.
        case unsupportedDType(tensor: String, dtype: String)
        /// `shape × dtype size` differs from the byte span given by `data_offsets`.
        case sizeMismatch(tensor: String, expectedBytes: Int, actualBytes: Int)
        /// `data_offsets` are reversed or reach past the end of the data buffer.
        case offsetsOutOfBounds(tensor: String, begin: Int, end: Int, bufferSize: Int)
        /// Two tensors share bytes of the data buffer.
        case overlappingTensors(String, String)
        /// The tensors leave bytes of the data buffer unused (a gap or trailing bytes).
        case bufferNotCovered(String)
        /// A tensor the manifest expects is not in the file.
        case missingTensor(String)
        /// The file holds a tensor the manifest does not describe.
        case unexpectedTensor(String)
        /// A tensor has a different shape than the manifest expects.
        case wrongShape(tensor: String, expected: [Int], actual: [Int])
        /// A model tensor is not stored as F32.
        case wrongDType(tensor: String, expected: String, actual: String)
        /// A tensor holds NaN or infinity (`index` is the first bad element, row-major).
        case nonFinite(tensor: String, index: Int)
        /// The tensors or metadata given to the writer cannot be written.
        case invalidInput(String)
        /// `manifest.json` is not valid JSON or does not match the manifest schema.
        case invalidManifest(String)
        /// `manifest.json` declares a schema version this build does not read.
        case unsupportedSchemaVersion(found: Int, supported: Int)
    }

    /// The file or directory the error is about.
    public var path: String
    /// What is wrong with it.
    public var problem: Problem

    /// Creates an error about `path`.
    public init(path: String, _ problem: Problem) {
        self.path = path
        self.problem = problem
    }

    /// `"<path>: <problem>"`, on one line.
    public var description: String { "\(path): \(problem.message)" }
}

extension ModelFileError.Problem {
    /// A human-readable description of the problem, without the path.
    public var message: String {
        switch self {
        case .missingFile:
            return "no such file or directory"
        case .io(let operation, let message):
            return "\(operation) failed: \(message)"
        case .fileTooShort(let size):
            return "file is \(size) bytes, shorter than the 8-byte safetensors header length"
        case .headerLengthInvalid(let length, let fileSize):
            return "safetensors header length \(length) is invalid for a file of \(fileSize) bytes"
        case .invalidHeader(let detail):
            return "invalid safetensors header: \(detail)"
        case .duplicateTensor(let name):
            return "tensor '\(name)' appears more than once"
        case .unsupportedDType(let tensor, let dtype):
            return "tensor '\(tensor)' has unsupported dtype '\(dtype)'"
        case .sizeMismatch(let tensor, let expected, let actual):
            return "tensor '\(tensor)': shape and dtype need \(expected) bytes but data_offsets span \(actual)"
        case .offsetsOutOfBounds(let tensor, let begin, let end, let size):
            return "tensor '\(tensor)': data_offsets [\(begin), \(end)] out of bounds of a \(size)-byte buffer"
        case .overlappingTensors(let a, let b):
            return "tensors '\(a)' and '\(b)' overlap in the data buffer"
        case .bufferNotCovered(let detail):
            return "data buffer not covered exactly by the tensors: \(detail)"
        case .missingTensor(let name):
            return "missing tensor '\(name)'"
        case .unexpectedTensor(let name):
            return "unexpected tensor '\(name)' (not described by the manifest)"
        case .wrongShape(let tensor, let expected, let actual):
            return "tensor '\(tensor)' has shape \(actual), expected \(expected)"
        case .wrongDType(let tensor, let expected, let actual):
            return "tensor '\(tensor)' has dtype \(actual), expected \(expected)"
        case .nonFinite(let tensor, let index):
            return "tensor '\(tensor)' has a non-finite value (NaN or infinity) at element \(index)"
        case .invalidInput(let detail):
            return "cannot write: \(detail)"
        case .invalidManifest(let detail):
            return "invalid manifest: \(detail)"
        case .unsupportedSchemaVersion(let found, let supported):
            return "manifest schemaVersion \(found) is newer than this flowgate supports (\(supported)); upgrade flowgate"
        }
    }
}
