import FlowgateCommon
import FlowgateCore
import Foundation
import Testing

@testable import FlowgateModelFormat

@Suite("AtomicFile")
struct AtomicFileTests {
    @Test func writesAndReplacesLeavingNoTemporaries() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let target = dir("state.json")
        try AtomicFile.write(Data("one".utf8), to: target)
        #expect(try Data(contentsOf: target) == Data("one".utf8))
        try AtomicFile.write(Data("two, longer".utf8), to: target)
        #expect(try Data(contentsOf: target) == Data("two, longer".utf8))
        try AtomicFile.write(Data(), to: target)
        #expect(try Data(contentsOf: target).isEmpty)
        #expect(dir.contents() == ["state.json"])
    }

    @Test func interruptedWriteDoesNotCorruptTheTarget() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let target = dir("w.safetensors")
        var rng = SplitMix64(seed: 5)
        let tensors = ["w": randomTensor([4, 4], using: &rng)]
        try Safetensors.write(tensors, to: target)
        // Simulate a crash after the temporary file was written but before the rename.
        let stale = dir(AtomicFile.temporaryPrefix(for: target) + "crashed")
        try Data("half-written garbage".utf8).write(to: stale)
        #expect(AtomicFile.isTemporaryName(stale.lastPathComponent))
        #expect(try Safetensors.read(contentsOf: target).tensors == tensors)

        // A later write succeeds, and the stale file can be cleaned up.
        let newer = ["w": randomTensor([4, 4], using: &rng)]
        try Safetensors.write(newer, to: target)
        #expect(try Safetensors.read(contentsOf: target).tensors == newer)
        #expect(AtomicFile.removeStaleTemporaries(for: target) == 1)
        #expect(dir.contents() == ["w.safetensors"])
    }

    @Test func failureNamesThePathAndLeavesNothing() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let error = #expect(throws: ModelFileError.self) {
            try AtomicFile.write(Data("x".utf8), to: dir("missing-subdir/file"))
        }
        #expect(caseName(error?.problem) == "io")
        #expect(error?.description.contains("missing-subdir") == true)
        #expect(dir.contents().isEmpty)
    }
}
