import Foundation
import Testing
@testable import FlowgateTraining

// MARK: - Temporary files

/// A fresh temporary directory per call (tests run in parallel).
func makeTempDir() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("flowgate-ds-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func write(_ bytes: [UInt8], to url: URL) throws {
    try Data(bytes).write(to: url)
}

/// Expects `body` to throw a `DatasetError` of `kind`, whose message names `file` and (if given)
/// `key`. Returns the error for further checks.
@discardableResult
func expectDatasetError(
    _ kind: DatasetError.Kind, file: String, key: String?, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) -> DatasetError? {
    do {
        try body()
        Issue.record("expected \(kind) error, but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let e as DatasetError {
        #expect(e.kind == kind, "got \(e.kind): \(e)", sourceLocation: sourceLocation)
        #expect(e.description.contains(file), "message does not name the file: \(e)", sourceLocation: sourceLocation)
        if let key {
            #expect(e.key == key, "key \(String(describing: e.key)) in: \(e)", sourceLocation: sourceLocation)
            #expect(e.description.contains("'\(key)'"), "message does not name the key: \(e)", sourceLocation: sourceLocation)
        }
        return e
    } catch {
        Issue.record("expected DatasetError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - Hand-built .npy and .zip bytes

/// `.npy` bytes with a hand-written header (numpy's layout: header padded to 64 bytes, ends in '\n').
func npyBytes(descr: String, shape: [Int], data: [UInt8], fortran: Bool = false, version: UInt8 = 1) -> [UInt8] {
    let shapeText = shape.isEmpty ? "()" : shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
    let prefix = version == 1 ? 10 : 12
    while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
    let n = header.utf8.count
    if version == 1 { out += [UInt8(n & 0xFF), UInt8(n >> 8)] } else { out += [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), 0, 0] }
    return out + Array(header.utf8) + data
}

func npy(_ a: NumpyArray) -> [UInt8] { npyBytes(descr: a.dtype.description, shape: a.shape, data: a.bytes) }

func f32(_ v: [Float], _ shape: [Int]) -> NumpyArray { try! NumpyArray(float32: v, shape: shape) }
func bools(_ v: [Bool]) -> NumpyArray { try! NumpyArray(bool: v, shape: [v.count]) }

/// Bit-by-bit CRC-32 (IEEE), independent of zlib.
func crc32Reference(_ data: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in data {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
    }
    return ~c
}

struct ZipMember {
    var name: String
    var data: [UInt8]
    var method: UInt16 = 0
    var crc: UInt32? = nil
    var declaredCompressed: UInt64? = nil
    var declaredUncompressed: UInt64? = nil
}

/// A ZIP archive (stored members unless `method` says otherwise). With `zip64`, sizes and offsets
/// go into ZIP64 extra fields in both local and central headers, and a ZIP64 end record is written.
func zipBytes(_ members: [ZipMember], zip64: Bool = false) -> [UInt8] {
    var out: [UInt8] = []
    var central: [UInt8] = []
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xFF) } }
    func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xFF) } }
    for m in members {
        let offset = UInt64(out.count)
        let crc = m.crc ?? crc32Reference(m.data)
        let csize = m.declaredCompressed ?? UInt64(m.data.count)
        let usize = m.declaredUncompressed ?? UInt64(m.data.count)
        let name = Array(m.name.utf8)
        let localExtra = zip64 ? le16(1) + le16(16) + le64(usize) + le64(csize) : []
        out += le32(0x0403_4B50) + le16(zip64 ? 45 : 20) + le16(0) + le16(Int(m.method)) + le16(0) + le16(0x21) + le32(crc)
        out += zip64 ? le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) : le32(UInt32(truncatingIfNeeded: csize)) + le32(UInt32(truncatingIfNeeded: usize))
        out += le16(name.count) + le16(localExtra.count) + name + localExtra + m.data
        let centralExtra = zip64 ? le16(1) + le16(24) + le64(usize) + le64(csize) + le64(offset) : []
        central += le32(0x0201_4B50) + le16(45) + le16(zip64 ? 45 : 20) + le16(0) + le16(Int(m.method)) + le16(0) + le16(0x21) + le32(crc)
        central += zip64 ? le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) : le32(UInt32(truncatingIfNeeded: csize)) + le32(UInt32(truncatingIfNeeded: usize))
        central += le16(name.count) + le16(centralExtra.count) + le16(0) + le16(0) + le16(0) + le32(0)
        central += le32(zip64 ? 0xFFFF_FFFF : UInt32(offset)) + name + centralExtra
    }
    let cdOffset = out.count
    out += central
    if zip64 {
        let z = out.count
        out += le32(0x0606_4B50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
        out += le64(UInt64(members.count)) + le64(UInt64(members.count)) + le64(UInt64(central.count)) + le64(UInt64(cdOffset))
        out += le32(0x0706_4B50) + le32(0) + le64(UInt64(z)) + le32(1)
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0)
    } else {
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(members.count) + le16(members.count)
        out += le32(UInt32(central.count)) + le32(UInt32(cdOffset)) + le16(0)
    }
    return out
}

/// A small valid dataset: two episodes (terminal at row 2, timeout at row 5), obs 2-d, act 1-d.
func tinyDatasetArrays() -> [String: NumpyArray] {
    [
        "observations": f32([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5], [6, 2]),
        "actions": f32([0.1, -0.2, 0.3, 0.4, -0.5, 0.6], [6, 1]),
        "rewards": f32([1, 2, 3, 4, 5, 6], [6]),
        "next_observations": f32([1, 1.5, 2, 2.5, 9, 9, 4, 4.5, 5, 5.5, 6, 6.5], [6, 2]),
        "terminals": bools([false, false, true, false, false, false]),
        "timeouts": bools([false, false, false, false, false, true]),
    ]
}

func npzMembers(_ arrays: [String: NumpyArray]) -> [ZipMember] {
    arrays.keys.sorted().map { ZipMember(name: $0 + ".npy", data: npy(arrays[$0]!)) }
}

// MARK: - Python (numpy, h5py) fixtures

enum PythonFixtures {
    /// FLOWGATE_PYTHON, or nil. With CI set and no interpreter the tests fail instead of skipping.
    static var python: String? { ProcessInfo.processInfo.environment["FLOWGATE_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } }
    static var mustRun: Bool { python != nil || ProcessInfo.processInfo.environment["CI"] != nil }
    static let skipMessage = "FLOWGATE_PYTHON is not set (and CI is not set): skipping fixtures written by numpy/h5py; set FLOWGATE_PYTHON to a python with numpy and h5py"

    /// Runs `script` with `args`; fails the test with Python's stderr on a non-zero exit.
    static func run(_ script: String, args: [String]) throws {
        let python = try #require(python, "CI is set but FLOWGATE_PYTHON is not: the numpy/h5py fixture tests must run in CI")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script] + args
        let err = Pipe()
        p.standardError = err
        try p.run()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "python failed: \(String(decoding: stderr, as: UTF8.self))")
    }

    /// Parses `expected.json` written by a fixture script: key → flat list of numbers, stored as
    /// Python `float.hex()` strings so they survive the trip exactly.
    static func expected(_ dir: URL) throws -> [String: [Double]] {
        let data = try Data(contentsOf: dir.appendingPathComponent("expected.json"))
        let obj = try JSONDecoder().decode([String: [String]].self, from: data)
        return try obj.mapValues { try $0.map { try #require(Double($0), "bad hex float \($0)") } }
    }
}
