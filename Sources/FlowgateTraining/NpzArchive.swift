import Foundation
internal import CZlib

/// Reader for NumPy `.npz` archives (`np.savez`: stored members; `np.savez_compressed`: deflate),
/// including ZIP64 end records and extra fields. Every size read from the archive is checked
/// against what the file holds before anything is allocated from it.
public enum NpzArchive {
    /// All members as arrays, keyed by member name without the `.npy` suffix.
    public static func read(path: String) throws -> [String: NumpyArray] {
        let data = try readWholeFile(path)
        return try data.withUnsafeBytes { try read($0, file: path) }
    }

    /// Parses archive bytes; `file` only labels errors.
    public static func read(_ buf: UnsafeRawBufferPointer, file: String) throws -> [String: NumpyArray] {
        let entries = try centralDirectory(buf, file: file)
        var out: [String: NumpyArray] = [:]
        for e in entries {
            if e.name.hasSuffix("/") { continue }  // directory entry
            let key = e.name.hasSuffix(".npy") ? String(e.name.dropLast(4)) : e.name
            guard out[key] == nil else {
                throw DatasetError(.duplicateKey, file: file, key: key, "member '\(e.name)' appears more than once")
            }
            out[key] = try member(e, buf, file: file, key: key)
        }
        return out
    }

    struct Entry {
        var name: String
        var flags: UInt16
        var method: UInt16
        var crc: UInt32
        var compressedSize: UInt64
        var uncompressedSize: UInt64
        var localHeaderOffset: UInt64
    }

    static let eocdSignature: UInt32 = 0x0605_4B50
    static let zip64LocatorSignature: UInt32 = 0x0706_4B50
    static let zip64EOCDSignature: UInt32 = 0x0606_4B50
    static let centralSignature: UInt32 = 0x0201_4B50
    static let localSignature: UInt32 = 0x0403_4B50

    static func centralDirectory(_ b: UnsafeRawBufferPointer, file: String) throws -> [Entry] {
        let n = b.count
        func truncated(_ msg: String) -> DatasetError { DatasetError(.truncatedArchive, file: file, msg) }
        let startsLikeZip = n >= 4 && b.u32(0) == localSignature
        // End of central directory: 22 bytes plus a comment of at most 65535 bytes.
        var eocd = -1
        if n >= 22 {
            var p = n - 22
            let lowest = max(0, n - 22 - 65535)
            while p >= lowest {
                if b.u32(p) == eocdSignature && p + 22 + Int(b.u16(p + 20)) <= n { eocd = p; break }
                p -= 1
            }
        }
        guard eocd >= 0 else {
            if startsLikeZip { throw truncated("truncated archive: no end-of-central-directory record (file cut short?)") }
            throw DatasetError(.notAZip, file: file, "not a zip archive (.npz): no ZIP signature or end-of-central-directory record")
        }
        guard b.u16(eocd + 4) == 0 || b.u16(eocd + 4) == 0xFFFF, b.u16(eocd + 6) == 0 || b.u16(eocd + 6) == 0xFFFF else {
            throw DatasetError(.unsupportedArchiveFeature, file: file, "multi-disk zip archives are not supported")
        }
        var entryCount = UInt64(b.u16(eocd + 10))
        var cdSize = UInt64(b.u32(eocd + 12))
        var cdOffset = UInt64(b.u32(eocd + 16))
        var cdLimit = UInt64(eocd)  // the central directory ends before the end record(s)
        // ZIP64: a locator 20 bytes before the end record points at the ZIP64 end record.
        if eocd >= 20, b.u32(eocd - 20) == zip64LocatorSignature {
            let z = b.u64(eocd - 20 + 8)
            guard z <= UInt64(eocd - 20), UInt64(eocd - 20) - z >= 56 else {
                throw DatasetError(.sizeOutOfRange, file: file, "ZIP64 end record offset \(z) lies outside the file")
            }
            let zp = Int(z)
            guard b.u32(zp) == zip64EOCDSignature else { throw truncated("ZIP64 end record missing at offset \(z)") }
            entryCount = b.u64(zp + 32)
            cdSize = b.u64(zp + 40)
            cdOffset = b.u64(zp + 48)
            cdLimit = z
        } else if entryCount == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            throw truncated("end record asks for ZIP64 but there is no ZIP64 locator")
        }
        guard cdOffset <= cdLimit, cdSize <= cdLimit - cdOffset else {
            throw DatasetError(
                .sizeOutOfRange, file: file,
                "central directory (offset \(cdOffset), size \(cdSize)) lies outside the \(n)-byte file")
        }
        guard entryCount <= cdSize / 46 else {
            throw DatasetError(.sizeOutOfRange, file: file, "\(entryCount) entries cannot fit a \(cdSize)-byte central directory")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(entryCount))
        var p = Int(cdOffset)
        let end = Int(cdOffset + cdSize)
        for k in 0..<Int(entryCount) {
            guard end - p >= 46, b.u32(p) == centralSignature else {
                throw truncated("central directory entry \(k) is missing or cut short at offset \(p)")
            }
            let nameLen = Int(b.u16(p + 28)), extraLen = Int(b.u16(p + 30)), commentLen = Int(b.u16(p + 32))
            guard end - p - 46 >= nameLen + extraLen + commentLen else {
                throw truncated("central directory entry \(k) runs past the directory")
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: b[(p + 46)..<(p + 46 + nameLen)]), as: UTF8.self)
            var e = Entry(
                name: name, flags: b.u16(p + 8), method: b.u16(p + 10), crc: b.u32(p + 16),
                compressedSize: UInt64(b.u32(p + 20)), uncompressedSize: UInt64(b.u32(p + 24)),
                localHeaderOffset: UInt64(b.u32(p + 42)))
            try applyZip64Extra(&e, b, from: p + 46 + nameLen, length: extraLen, file: file)
            entries.append(e)
            p += 46 + nameLen + extraLen + commentLen
        }
        return entries
    }

    /// ZIP64 extended information (header id 0x0001): 8-byte values for exactly those of
    /// uncompressed size, compressed size and local header offset that are 0xFFFFFFFF, in that order.
    static func applyZip64Extra(_ e: inout Entry, _ b: UnsafeRawBufferPointer, from start: Int, length: Int, file: String) throws {
        var p = start
        let end = start + length
        while end - p >= 4 {
            let id = b.u16(p), size = Int(b.u16(p + 2))
            guard end - p - 4 >= size else { break }
            if id == 0x0001 {
                var q = p + 4
                let qEnd = q + size
                func next(_ what: String) throws -> UInt64 {
                    guard qEnd - q >= 8 else {
                        throw DatasetError(.truncatedArchive, file: file, key: e.name, "ZIP64 extra field lacks the \(what)")
                    }
                    defer { q += 8 }
                    return b.u64(q)
                }
                if e.uncompressedSize == 0xFFFF_FFFF { e.uncompressedSize = try next("uncompressed size") }
                if e.compressedSize == 0xFFFF_FFFF { e.compressedSize = try next("compressed size") }
                if e.localHeaderOffset == 0xFFFF_FFFF { e.localHeaderOffset = try next("local header offset") }
                return
            }
            p += 4 + size
        }
    }

    /// Largest ratio a deflate stream can reach (RFC 1951: 258 bytes from a 2-bit-ish code; ~1032:1).
    static let maxDeflateRatio: UInt64 = 1032

    static func member(_ e: Entry, _ b: UnsafeRawBufferPointer, file: String, key: String) throws -> NumpyArray {
        let n = UInt64(b.count)
        func fail(_ k: DatasetError.Kind, _ msg: String) -> DatasetError { DatasetError(k, file: file, key: key, msg) }
        if e.flags & 1 != 0 { throw fail(.unsupportedArchiveFeature, "member is encrypted") }
        guard e.method == 0 || e.method == 8 else {
            throw fail(.unsupportedArchiveFeature, "compression method \(e.method) is not supported (only stored and deflate)")
        }
        guard e.localHeaderOffset <= n, n - e.localHeaderOffset >= 30 else {
            throw fail(.truncatedArchive, "local header offset \(e.localHeaderOffset) lies outside the \(n)-byte file")
        }
        let lh = Int(e.localHeaderOffset)
        guard b.u32(lh) == localSignature else { throw fail(.truncatedArchive, "no local header at offset \(lh)") }
        let dataStart = UInt64(lh) + 30 + UInt64(b.u16(lh + 26)) + UInt64(b.u16(lh + 28))
        guard dataStart <= n else { throw fail(.memberTruncated, "local header runs past the end of the file") }
        guard e.compressedSize <= n - dataStart else {
            throw fail(
                .memberTruncated,
                "member declares \(e.compressedSize) compressed bytes but only \(n - dataStart) remain in the file (truncated?)")
        }
        let raw = UnsafeRawBufferPointer(rebasing: b[Int(dataStart)..<Int(dataStart + e.compressedSize)])
        if e.method == 0 {
            guard e.uncompressedSize == e.compressedSize else {
                throw fail(.sizeOutOfRange, "stored member declares \(e.uncompressedSize) bytes but holds \(e.compressedSize)")
            }
            try checkCRC(raw, e, file: file, key: key)
            return try NumpyFormat.parseNpy(raw, file: file, key: key)
        }
        let (limit, o) = e.compressedSize.multipliedReportingOverflow(by: maxDeflateRatio)
        guard !o, e.uncompressedSize <= limit + 64, e.uncompressedSize <= UInt64(Int.max / 2) else {
            throw fail(
                .sizeOutOfRange,
                "declared uncompressed size \(e.uncompressedSize) is impossible for \(e.compressedSize) deflated bytes")
        }
        let inflated = try inflateRaw(raw, declaredSize: Int(e.uncompressedSize), file: file, key: key)
        return try inflated.withUnsafeBytes { out in
            try checkCRC(out, e, file: file, key: key)
            return try NumpyFormat.parseNpy(out, file: file, key: key)
        }
    }

    static func checkCRC(_ data: UnsafeRawBufferPointer, _ e: Entry, file: String, key: String) throws {
        var crc: uLong = crc32(0, nil, 0)
        var p = 0
        while p < data.count {
            let chunk = min(data.count - p, 1 << 30)
            crc = crc32(crc, data.baseAddress!.advanced(by: p).assumingMemoryBound(to: Bytef.self), uInt(chunk))
            p += chunk
        }
        guard UInt32(truncatingIfNeeded: crc) == e.crc else {
            throw DatasetError(
                .crcMismatch, file: file, key: key,
                String(format: "CRC-32 mismatch: archive says %08x, data gives %08x (corrupt file)", e.crc, UInt32(truncatingIfNeeded: crc)))
        }
    }

    /// Raw-deflate decode (no zlib header) of exactly `declaredSize` bytes. The output buffer
    /// grows with what the stream really produces and never past `declaredSize`.
    static func inflateRaw(_ input: UnsafeRawBufferPointer, declaredSize: Int, file: String, key: String) throws -> [UInt8] {
        func fail(_ k: DatasetError.Kind, _ msg: String) -> DatasetError { DatasetError(k, file: file, key: key, msg) }
        var strm = z_stream()
        guard inflateInit2_(&strm, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw fail(.io, "zlib inflateInit2 failed")
        }
        defer { inflateEnd(&strm) }
        var out = [UInt8](repeating: 0, count: min(declaredSize, max(input.count * 4, 1 << 16)))
        var produced = 0
        var consumed = 0
        while true {
            if strm.avail_in == 0 && consumed < input.count {
                let chunk = min(input.count - consumed, Int(UInt32.max))
                strm.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.advanced(by: consumed).assumingMemoryBound(to: Bytef.self))
                strm.avail_in = uInt(chunk)
                consumed += chunk
            }
            if produced == out.count && out.count < declaredSize {
                out.append(contentsOf: repeatElement(0, count: min(declaredSize - out.count, max(out.count, 1 << 16))))
            }
            var probe: UInt8 = 0
            let atCap = produced == out.count
            let ret: Int32
            if atCap {
                // Full: one more byte of output would exceed the declared size.
                ret = withUnsafeMutablePointer(to: &probe) { pp -> Int32 in
                    strm.next_out = pp
                    strm.avail_out = 1
                    return inflate(&strm, Z_NO_FLUSH)
                }
                if strm.avail_out == 0 { throw fail(.sizeOutOfRange, "deflate stream inflates past the declared size \(declaredSize)") }
            } else {
                ret = out.withUnsafeMutableBytes { o -> Int32 in
                    let room = min(o.count - produced, Int(UInt32.max))
                    strm.next_out = o.baseAddress!.advanced(by: produced).assumingMemoryBound(to: Bytef.self)
                    strm.avail_out = uInt(room)
                    let r = inflate(&strm, Z_NO_FLUSH)
                    produced += room - Int(strm.avail_out)
                    return r
                }
            }
            strm.next_out = nil
            switch ret {
            case Z_STREAM_END:
                guard produced == declaredSize else {
                    throw fail(.memberTruncated, "member inflates to \(produced) bytes, declared \(declaredSize)")
                }
                return out
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                if strm.avail_in == 0 && consumed == input.count {
                    throw fail(.memberTruncated, "deflate stream ends early after \(produced) of \(declaredSize) bytes")
                }
                continue
            default:
                let msg = strm.msg.map { String(cString: $0) } ?? "code \(ret)"
                throw fail(.memberTruncated, "corrupt deflate data: \(msg)")
            }
        }
    }
}

extension UnsafeRawBufferPointer {
    /// Little-endian reads; callers check bounds first.
    @inline(__always) func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always) func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
}
