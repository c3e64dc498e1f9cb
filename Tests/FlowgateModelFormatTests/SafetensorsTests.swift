import FlowgateCommon
import FlowgateCore
import Foundation
import Testing

@testable import FlowgateModelFormat

@Suite("Safetensors")
struct SafetensorsTests {
    func sampleTensors() -> [String: Tensor] {
        var rng = SplitMix64(seed: 1)
        return [
            "b.weight": randomTensor([3, 5], using: &rng),
            "a": randomTensor([7], using: &rng),
            "scalar": randomTensor([], using: &rng),
            "empty": Tensor(shape: [0, 4]),
            "special": Tensor(shape: [6], scalars: [0, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .infinity, .nan]),
            "name with \"quotes\"\n\u{e9}": randomTensor([2, 1, 3], using: &rng),
        ]
    }

    @Test func roundTripInMemory() throws {
        let tensors = sampleTensors()
        let data = try Safetensors.encode(tensors)
        let file = try Safetensors.decode(data)
        #expect(file.names == tensors.keys.sorted())
        for (name, tensor) in tensors {
            #expect(file.tensors[name]?.shape == tensor.shape)
            #expect(bitwiseEqual(file.tensors[name]?.scalars ?? [], tensor.scalars), "\(name)")
            #expect(file.dtypes[name] == .f32)
        }
        #expect(file.metadata.isEmpty)
    }

    @Test func headerIsPaddedToEightBytesAndSortedLikeTheReference() throws {
        let data = try Safetensors.encode(["b": Tensor(shape: [2, 3]), "a": Tensor(shape: [1])], metadata: ["k": "v"])
        let length = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        #expect(length % 8 == 0)
        let header = String(decoding: data[8..<(8 + length)], as: UTF8.self)
        #expect(
            header.trimmingCharacters(in: .whitespaces)
                == #"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2,3],"data_offsets":[4,28]}}"#
        )
        #expect(data.count == 8 + length + 28)
    }

    @Test func fileAndMetadataRoundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let tensors = sampleTensors()
        let metadata = ["format": "pt", "unicode": "\u{4e2d}\u{1F600}", "control": "tab\tnl\n\u{1}", "empty": ""]
        try Safetensors.write(tensors, metadata: metadata, to: dir("x.safetensors"))
        let file = try Safetensors.read(contentsOf: dir("x.safetensors"))
        #expect(file.metadata == metadata)
        #expect(file.names == tensors.keys.sorted())
        for (name, tensor) in tensors { #expect(bitwiseEqual(file.tensors[name]!.scalars, tensor.scalars)) }
        #expect(dir.contents() == ["x.safetensors"])
    }

    @Test func convertsOtherDTypes() throws {
        var buffer: [UInt8] = []
        func append<T>(_ value: T) { withUnsafeBytes(of: value) { buffer.append(contentsOf: $0) } }
        for v in [1.5, -1e300, 0.1] as [Double] { append(v.bitPattern.littleEndian) }  // F64, 24 bytes
        // F16: 1.0, -2.0, smallest subnormal (2^-24), +inf
        for bits in [0x3C00, 0xC000, 0x0001, 0x7C00] as [UInt16] { append(bits.littleEndian) }  // 8 bytes
        for bits in [0x3F80, 0xC040] as [UInt16] { append(bits.littleEndian) }  // BF16 1.0, -3.0: 4 bytes
        for v in [-5, 1 << 40] as [Int64] { append(v.littleEndian) }  // I64: 16 bytes
        for v in [7, -8] as [Int32] { append(v.littleEndian) }  // I32: 8 bytes
        let header = """
            {"d":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},"h":{"dtype":"F16","shape":[2,2],"data_offsets":[24,32]},\
            "b":{"dtype":"BF16","shape":[2],"data_offsets":[32,36]},"l":{"dtype":"I64","shape":[2],"data_offsets":[36,52]},\
            "i":{"dtype":"I32","shape":[2],"data_offsets":[52,60]}}
            """
        let file = try Safetensors.decode(rawSafetensors(header: header, buffer: buffer))
        #expect(file.tensors["d"]?.scalars == [1.5, -.infinity, Float(0.1 as Double)])
        #expect(file.tensors["h"]?.scalars == [1, -2, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        #expect(file.tensors["h"]?.shape == [2, 2])
        #expect(file.tensors["b"]?.scalars == [1, -3])
        #expect(file.tensors["l"]?.scalars == [-5, Float(1 << 40)])
        #expect(file.tensors["i"]?.scalars == [7, -8])
        #expect(file.dtypes == ["d": .f64, "h": .f16, "b": .bf16, "l": .i64, "i": .i32])
    }

    @Test func halfConversionIsExactForEveryBitPattern() {
        #if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
            for bits in UInt16.min...UInt16.max {
                let expected = Float(Float16(bitPattern: bits))
                let got = SafetensorsDType.floatFromHalf(bits)
                if expected.isNaN {
                    #expect(got.isNaN)
                } else if got.bitPattern != expected.bitPattern {
                    Issue.record("half 0x\(String(bits, radix: 16)): got \(got), expected \(expected)")
                }
            }
        #endif
    }

    @Test func writerRejectsReservedNames() {
        let error = #expect(throws: ModelFileError.self) {
            try Safetensors.encode(["__metadata__": Tensor(shape: [1])])
        }
        #expect(caseName(error?.problem) == "invalidInput")
    }
}

@Suite("Safetensors corruption")
struct SafetensorsCorruptionTests {
    func problem(_ data: Data) -> ModelFileError.Problem? {
        let error = #expect(throws: ModelFileError.self) { try Safetensors.decode(data, path: "bad.safetensors") }
        if let error { #expect(error.description.hasPrefix("bad.safetensors: ")) }
        return error?.problem
    }

    let valid = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test func truncatedFile() {
        #expect(problem(Data([1, 2, 3])) == .fileTooShort(size: 3))
        #expect(problem(Data()) == .fileTooShort(size: 0))
    }

    @Test func absurdHeaderLength() {
        #expect(problem(rawSafetensors(header: valid, declaredLength: 1 << 40)) == .headerLengthInvalid(length: 1 << 40, fileSize: 8 + valid.utf8.count))
        #expect(caseName(problem(rawSafetensors(header: "{}", declaredLength: .max))) == "headerLengthInvalid")
        // Within the 100 MiB cap but past the end of the file.
        #expect(caseName(problem(rawSafetensors(header: "{}", declaredLength: 3))) == "headerLengthInvalid")
    }

    @Test func headerCutMidJSON() {
        let cut = String(valid.prefix(30))
        #expect(caseName(problem(rawSafetensors(header: cut))) == "invalidHeader")
    }

    @Test func headerNotJSONOrNotAnObject() {
        #expect(caseName(problem(rawSafetensors(header: "hello"))) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: "[1,2]"))) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: "{} x"))) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: String(repeating: "[", count: 10_000)))) == "invalidHeader")
        var invalidUTF8 = rawSafetensors(header: #"{"\#u{e9}":1}"#)
        invalidUTF8[10] = 0xFF
        #expect(caseName(problem(invalidUTF8)) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: #"{"__metadata__":{"k":1}}"#))) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#))) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}"#))) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[1]}}"#))) == "invalidHeader")
        #expect(caseName(problem(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999999]}}"#))) == "invalidHeader")
    }

    @Test func unknownDType() {
        let header = #"{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#
        #expect(problem(rawSafetensors(header: header, buffer: Array(repeating: 0, count: 8))) == .unsupportedDType(tensor: "a", dtype: "Q7"))
    }

    @Test func wrongDTypeForSpanIsASizeMismatch() {
        let header = #"{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}"#
        #expect(problem(rawSafetensors(header: header, buffer: Array(repeating: 0, count: 8))) == .sizeMismatch(tensor: "a", expectedBytes: 16, actualBytes: 8))
    }

    @Test func shapeOffsetMismatch() {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        #expect(problem(rawSafetensors(header: header, buffer: Array(repeating: 0, count: 8))) == .sizeMismatch(tensor: "a", expectedBytes: 12, actualBytes: 8))
        let huge = #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#
        #expect(caseName(problem(rawSafetensors(header: huge, buffer: Array(repeating: 0, count: 8)))) == "invalidHeader")
    }

    @Test func offsetsOutOfBounds() {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        #expect(problem(rawSafetensors(header: header, buffer: Array(repeating: 0, count: 8))) == .offsetsOutOfBounds(tensor: "a", begin: 0, end: 16, bufferSize: 8))
    }

    @Test func overlappingGapsAndTrailingBytes() {
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        #expect(problem(rawSafetensors(header: overlap, buffer: Array(repeating: 0, count: 12))) == .overlappingTensors("a", "b"))
        let gap = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        #expect(caseName(problem(rawSafetensors(header: gap, buffer: Array(repeating: 0, count: 12)))) == "bufferNotCovered")
        #expect(caseName(problem(rawSafetensors(header: valid, buffer: Array(repeating: 0, count: 12)))) == "bufferNotCovered")
    }

    @Test func duplicateNames() {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(problem(rawSafetensors(header: header, buffer: Array(repeating: 0, count: 8))) == .duplicateTensor("a"))
    }

    @Test func missingFileNamesThePath() {
        let error = #expect(throws: ModelFileError.self) {
            try Safetensors.read(contentsOf: URL(fileURLWithPath: "/nonexistent/dir/x.safetensors"))
        }
        #expect(error?.description == "/nonexistent/dir/x.safetensors: no such file or directory")
    }

    /// Every truncation and many single-byte corruptions of a valid file either decode or throw.
    @Test func neverCrashesOnMutatedInput() throws {
        var rng = SplitMix64(seed: 99)
        let good = try Safetensors.encode(["w": randomTensor([3, 2], using: &rng), "b": randomTensor([3], using: &rng)], metadata: ["k": "v"])
        for length in 0..<good.count { _ = try? Safetensors.decode(good.prefix(length)) }
        for _ in 0..<2000 {
            var bad = good
            bad[Int.random(in: 0..<bad.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            _ = try? Safetensors.decode(bad)
        }
    }
}
