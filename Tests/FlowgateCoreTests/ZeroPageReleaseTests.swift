import Testing

@testable import FlowgateCore

#if os(Linux)
    import Glibc

    /// `DenseKernels.releaseZeroPages`, which gives back libxsmm's zero-filled tables at server
    /// start (docs/benchmarks.md, "Memory at the limit"): pages that hold only zeros leave memory
    /// and read back as zeros; every other page keeps its contents and stays resident; pages never
    /// touched are not faulted in.
    @Suite("Releasing zero-filled pages")
    struct ZeroPageReleaseTests {
        static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

        /// Which of the `count` pages at `start` are resident.
        static func resident(_ start: UnsafeMutableRawPointer, count: Int) -> [Bool] {
            var vector = [UInt8](repeating: 0, count: count)
            let r = vector.withUnsafeMutableBufferPointer { mincore(start, count * page, $0.baseAddress!) }
            precondition(r == 0, "mincore failed")
            return vector.map { $0 & 1 == 1 }
        }

        @Test("zero pages are released, written pages keep their bytes, untouched pages stay out")
        func releasesOnlyZeroPages() throws {
            let count = 16
            let raw = mmap(nil, count * Self.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            let start = try #require(raw == MAP_FAILED ? nil : raw)
            defer { munmap(start, count * Self.page) }
            let bytes = start.assumingMemoryBound(to: UInt8.self)
            // Pages 0..<12 written (zeros), except pages 3 and 9, which get one non-zero byte each
            // (9 at its last byte); pages 12..<16 never touched.
            for p in 0..<12 { (bytes + p * Self.page).update(repeating: 0, count: Self.page) }
            bytes[3 * Self.page + 100] = 7
            bytes[10 * Self.page - 1] = 42
            #expect(Self.resident(start, count: count) == (0..<count).map { $0 < 12 })

            let released = DenseKernels.releaseZeroPages(start, length: count * Self.page)
            #expect(released == 10 * Self.page)
            #expect(Self.resident(start, count: count) == (0..<count).map { $0 == 3 || $0 == 9 })
            #expect(bytes[3 * Self.page + 100] == 7)
            #expect(bytes[10 * Self.page - 1] == 42)
            // Released pages read back as zeros.
            var sum = 0
            for i in 0..<(count * Self.page) where i / Self.page != 3 && i / Self.page != 9 { sum += Int(bytes[i]) }
            #expect(sum == 0)
        }

        @Test("a start that is not page-aligned is refused")
        func refusesMisaligned() throws {
            let raw = mmap(nil, 2 * Self.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            let start = try #require(raw == MAP_FAILED ? nil : raw)
            defer { munmap(start, 2 * Self.page) }
            #expect(DenseKernels.releaseZeroPages(start + 8, length: Self.page) == nil)
        }
    }
#endif
