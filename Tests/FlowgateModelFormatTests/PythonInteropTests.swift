import FlowgateCommon
import FlowgateCore
import Foundation
import Testing

@testable import FlowgateModelFormat

/// Safetensors interop with the reference implementation (PyPI `safetensors`), which is the real
/// counterpart: files written by Python must load here bit for bit, and files written here must
/// load in Python (and match what Python itself writes byte for byte).
///
/// Needs `FLOWGATE_PYTHON` pointing at a Python with `numpy` and `safetensors`
/// (`scripts/bootstrap.sh test` sets it). Skipped when neither `FLOWGATE_PYTHON` nor `CI` is set;
/// when `CI` is set, a missing `FLOWGATE_PYTHON` is a failure.
@Suite("Python safetensors interop", .enabled(if: PythonInterop.shouldRun, PythonInterop.skipReason))
struct PythonInteropTests {
    @Test func swiftReadsWhatPythonWrites() throws {
        let python = try PythonInterop.requirePython()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        try PythonInterop.run(python, "write", dir.url.path)

        struct Reference: Decodable {
            struct Entry: Decodable {
                var dtype: String
                var shape: [Int]
                var values: [Double]
            }
            var metadata: [String: String]
            var tensors: [String: Entry]
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        let reference = try decoder.decode(Reference.self, from: Data(contentsOf: dir("from_python.json")))
        let file = try Safetensors.read(contentsOf: dir("from_python.safetensors"))

        #expect(file.metadata == reference.metadata)
        #expect(file.names == reference.tensors.keys.sorted())
        #expect(reference.tensors.count >= 8)
        let dtypeNames: [String: SafetensorsDType] = [
            "float32": .f32, "float64": .f64, "float16": .f16, "int32": .i32, "int64": .i64,
        ]
        for (name, entry) in reference.tensors {
            let tensor = try #require(file.tensors[name], "\(name)")
            #expect(tensor.shape == entry.shape, "\(name)")
            #expect(file.dtypes[name] == dtypeNames[entry.dtype], "\(name)")
            // Lossless for float32/float16/small ints; float64 and int64 round to nearest Float,
            // exactly as Float(Double) does.
            let expected = entry.values.map { Float($0) }
            #expect(bitwiseEqual(tensor.scalars, expected), "\(name): \(tensor.scalars) != \(expected)")
        }
    }

    @Test func pythonReadsWhatSwiftWrites() throws {
        let python = try PythonInterop.requirePython()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        var rng = SplitMix64(seed: 2024)
        let tensors: [String: Tensor] = [
            "velocity.0.weight": randomTensor([5, 9], using: &rng),
            "velocity.0.bias": randomTensor([5], using: &rng),
            "odd/name:with spaces": randomTensor([1, 3, 1, 2], using: &rng),
            "scalar": randomTensor([], using: &rng),
            "empty": Tensor(shape: [3, 0]),
            "special": Tensor(
                shape: [7],
                scalars: [0, -0.0, .leastNonzeroMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude, 1e-7, 1.0 / 3]),
        ]
        let metadata = ["format": "flowgate", "quote": "say \"hi\"\n", "unicode": "\u{e9}\u{4e2d}\u{1F600}"]
        try Safetensors.write(tensors, metadata: metadata, to: dir("from_swift.safetensors"))
        try Safetensors.write(tensors, to: dir("from_swift_plain.safetensors"))

        struct Expected: Encodable {
            struct Entry: Encodable {
                var shape: [Int]
                var values: [Double]
            }
            var metadata: [String: String]
            var tensors: [String: Entry]
        }
        let expected = Expected(
            metadata: metadata,
            tensors: tensors.mapValues { Expected.Entry(shape: $0.shape, values: $0.scalars.map { Double($0) }) })
        try JSONEncoder().encode(expected).write(to: dir("expected.json"))
        try PythonInterop.run(python, "check", dir.url.path)
    }
}

/// Locating Python and running the interop script.
enum PythonInterop {
    static let environment = ProcessInfo.processInfo.environment
    static let python = environment["FLOWGATE_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
    static let shouldRun = python != nil || environment["CI"] != nil
    static let skipReason: Comment =
        "Python interop skipped: set FLOWGATE_PYTHON to a Python with numpy and safetensors (required when CI is set)"

    /// `clients/python/tests/interop/safetensors_interop.py`, found relative to this source file.
    static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("clients/python/tests/interop/safetensors_interop.py")

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func requirePython() throws -> String {
        guard let python else {
            throw Failure(description: "CI is set but FLOWGATE_PYTHON is not: cannot run the Python interop tests")
        }
        return python
    }

    /// Runs the interop script and throws with its output unless it exits 0.
    static func run(_ python: String, _ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw Failure(description: "\(python) \(script.lastPathComponent) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
        }
    }
}
