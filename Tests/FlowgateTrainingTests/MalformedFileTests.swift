import Foundation
import Testing
@testable import FlowgateTraining

/// Hand-built broken files (no Python needed): each is rejected with a typed error whose message
/// names the file and the key.
@Suite struct MalformedFileTests {
    /// Writes `bytes` as `<name>` in a fresh temp dir, returns the path.
    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = try makeTempDir().appendingPathComponent(name)
        try write(bytes, to: url)
        return url.path
    }

    func members(replacing key: String? = nil, with array: NumpyArray? = nil, removing removed: String? = nil) -> [ZipMember] {
        var arrays = tinyDatasetArrays()
        if let key { arrays[key] = array }
        if let removed { arrays[removed] = nil }
        return npzMembers(arrays)
    }

    @Test func handBuiltArchivesLoad() throws {
        let plain = try OfflineDataset.load(path: try file("ok.npz", zipBytes(members())))
        let zip64 = try OfflineDataset.load(path: try file("ok64.npz", zipBytes(members(), zip64: true)))
        let expected = try OfflineDataset(arrays: tinyDatasetArrays(), source: "x")
        for ds in [plain, zip64] {
            #expect(ds.observations == expected.observations)
            #expect(ds.nextObservations == expected.nextObservations)
            #expect(ds.rewards == [1, 2, 3, 4, 5, 6])
            #expect(ds.terminals == expected.terminals && ds.timeouts == expected.timeouts)
        }
    }

    @Test func missingKey() throws {
        let path = try file("missing.npz", zipBytes(members(removing: "actions")))
        expectDatasetError(.missingKey, file: path, key: "actions") { _ = try OfflineDataset.load(path: path) }
    }

    @Test func actionsWithDifferentN() throws {
        let path = try file("shape.npz", zipBytes(members(replacing: "actions", with: f32([1, 2, 3], [3, 1]))))
        let e = expectDatasetError(.shapeMismatch, file: path, key: "actions") { _ = try OfflineDataset.load(path: path) }
        #expect(e?.detail.contains("3 rows") == true)
    }

    @Test func nanInRewards() throws {
        let path = try file("nan.npz", zipBytes(members(replacing: "rewards", with: f32([1, 2, .nan, 4, 5, 6], [6]))))
        let e = expectDatasetError(.nonFinite, file: path, key: "rewards") { _ = try OfflineDataset.load(path: path) }
        #expect(e?.detail.contains("row 2") == true)
        let inf = try file("inf.npz", zipBytes(members(replacing: "observations", with: f32([0, 0, 0, 0, 0, 0, 0, 0, 0, .infinity, 0, 0], [6, 2]))))
        let e2 = expectDatasetError(.nonFinite, file: inf, key: "observations") { _ = try OfflineDataset.load(path: inf) }
        #expect(e2?.detail.contains("row 4") == true)
    }

    @Test func truncatedFile() throws {
        let bytes = zipBytes(members())
        let path = try file("cut.npz", Array(bytes.prefix(bytes.count / 2)))
        expectDatasetError(.truncatedArchive, file: path, key: nil) { _ = try OfflineDataset.load(path: path) }
        // Every prefix, and every single-byte corruption, is rejected or loaded — never a crash.
        for cut in stride(from: 0, to: bytes.count, by: 7) {
            #expect(throws: DatasetError.self) { _ = try bytes.prefix(cut).withUnsafeBytes { try NpzArchive.read($0, file: "p") } }
        }
        for k in stride(from: 0, to: bytes.count, by: 3) {
            var b = bytes
            b[k] ^= 0xA5
            do { _ = try b.withUnsafeBytes { try NpzArchive.read($0, file: "f") } } catch is DatasetError {} catch {
                Issue.record("non-dataset error \(error)")
            }
        }
    }

    @Test func memberRunsPastEnd() throws {
        var m = members()
        m[0].declaredCompressed = 1 << 40
        m[0].declaredUncompressed = 1 << 40
        let path = try file("huge.npz", zipBytes(m, zip64: true))
        expectDatasetError(.memberTruncated, file: path, key: "actions") { _ = try NpzArchive.read(path: path) }
    }

    @Test func hugeDeclaredSizes() throws {
        // A deflated member claiming to inflate 10 bytes into 1 TB.
        var m = members()
        m[0].method = 8
        m[0].declaredUncompressed = 1 << 40
        let path = try file("bomb.npz", zipBytes(m, zip64: true))
        expectDatasetError(.sizeOutOfRange, file: path, key: "actions") { _ = try NpzArchive.read(path: path) }
        // A .npy header whose shape needs terabytes.
        let npyHuge = npyBytes(descr: "<f4", shape: [1_000_000_000, 1_000_000], data: [0, 0, 0, 0])
        let path2 = try file("hugeshape.npz", zipBytes([ZipMember(name: "observations.npy", data: npyHuge)]))
        expectDatasetError(.memberTruncated, file: path2, key: "observations") { _ = try NpzArchive.read(path: path2) }
        // Shape whose element count overflows Int.
        let npyOverflow = npyBytes(descr: "<f8", shape: [1 << 40, 1 << 40], data: [])
        let path3 = try file("overflow.npz", zipBytes([ZipMember(name: "rewards.npy", data: npyOverflow)]))
        expectDatasetError(.sizeOutOfRange, file: path3, key: "rewards") { _ = try NpzArchive.read(path: path3) }
    }

    @Test func crcMismatch() throws {
        var m = members()
        let i = m.firstIndex { $0.name == "rewards.npy" }!
        m[i].crc = crc32Reference(m[i].data) ^ 1
        let path = try file("crc.npz", zipBytes(m))
        expectDatasetError(.crcMismatch, file: path, key: "rewards") { _ = try OfflineDataset.load(path: path) }
    }

    @Test func notAZip() throws {
        let path = try file("text.npz", Array("observations,actions\n1,2\n".utf8))
        expectDatasetError(.notAZip, file: path, key: nil) { _ = try OfflineDataset.load(path: path) }
        let empty = try file("empty.npz", [])
        expectDatasetError(.notAZip, file: empty, key: nil) { _ = try OfflineDataset.load(path: empty) }
        let h5 = try file("fake.hdf5", Array("not hdf5 at all".utf8))
        expectDatasetError(.hdf5, file: h5, key: nil) { _ = try OfflineDataset.load(path: h5) }
        let missing = "/nonexistent/flowgate/none.npz"
        expectDatasetError(.io, file: missing, key: nil) { _ = try OfflineDataset.load(path: missing) }
        expectDatasetError(.unsupportedFormat, file: "x.csv", key: nil) { _ = try OfflineDataset.load(path: "x.csv") }
    }

    @Test func fortranOrder() throws {
        let obs = tinyDatasetArrays()["observations"]!
        var m = members()
        let i = m.firstIndex { $0.name == "observations.npy" }!
        m[i].data = npyBytes(descr: "<f4", shape: [6, 2], data: obs.bytes, fortran: true)
        let path = try file("fortran.npz", zipBytes(m))
        expectDatasetError(.fortranOrder, file: path, key: "observations") { _ = try OfflineDataset.load(path: path) }
    }

    @Test func unsupportedDtypes() throws {
        for (descr, kind) in [("<c8", DatasetError.Kind.unsupportedDtype), ("|O", .unsupportedDtype), (">f4", .bigEndian), ("<f2", .unsupportedDtype)] {
            var m = members()
            let i = m.firstIndex { $0.name == "rewards.npy" }!
            m[i].data = npyBytes(descr: descr, shape: [6], data: [UInt8](repeating: 0, count: 24))
            let path = try file("dtype.npz", zipBytes(m))
            expectDatasetError(kind, file: path, key: "rewards") { _ = try OfflineDataset.load(path: path) }
        }
        // Strings where numbers are required.
        let u = npyBytes(descr: "<U1", shape: [6], data: [UInt8](repeating: 0x41, count: 24).enumerated().map { $0.offset % 4 == 0 ? $0.element : 0 })
        var m = members()
        m[m.firstIndex { $0.name == "rewards.npy" }!].data = u
        let path = try file("strrew.npz", zipBytes(m))
        expectDatasetError(.unsupportedDtype, file: path, key: "rewards") { _ = try OfflineDataset.load(path: path) }
    }

    @Test func badHeaders() throws {
        for header in ["{'descr': '<f4', 'shape': (2,), }", "not a dict", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,", "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }"] {
            var b: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8)
            b += [UInt8](repeating: 0, count: 8)
            let path = try file("hdr.npz", zipBytes([ZipMember(name: "observations.npy", data: b)]))
            expectDatasetError(.badHeader, file: path, key: "observations") { _ = try NpzArchive.read(path: path) }
        }
        // shape × itemsize ≠ data length
        let path = try file("len.npz", zipBytes([ZipMember(name: "rewards.npy", data: npyBytes(descr: "<f4", shape: [2], data: [UInt8](repeating: 0, count: 12)))]))
        expectDatasetError(.shapeMismatch, file: path, key: "rewards") { _ = try NpzArchive.read(path: path) }
    }

    @Test func bothFlagsSet() throws {
        let path = try file("flags.npz", zipBytes(members(replacing: "timeouts", with: bools([false, false, true, false, false, true]))))
        let e = expectDatasetError(.invalidFlags, file: path, key: "terminals") { _ = try OfflineDataset.load(path: path) }
        #expect(e?.detail.contains("row 2") == true)
    }

    @Test func duplicateMember() throws {
        let path = try file("dup.npz", zipBytes(members() + [members()[0]]))
        expectDatasetError(.duplicateKey, file: path, key: "actions") { _ = try NpzArchive.read(path: path) }
    }
}
