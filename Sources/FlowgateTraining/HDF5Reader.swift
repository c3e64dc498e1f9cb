import Foundation
@preconcurrency internal import CHDF5

/// Reader for D4RL-layout `.hdf5` files (as written by h5py) through the libhdf5 C API.
///
/// Root-level numeric/bool datasets become arrays; root-level string datasets, string and numeric
/// scalar attributes of the root and of the `metadata` group, and scalar datasets inside `metadata/`
/// become metadata. Everything else under `infos/` and `metadata/` is ignored.
///
/// The HDF5 macros (`H5T_NATIVE_FLOAT`, `H5P_DEFAULT`, `H5F_ACC_RDONLY`, …) do not import into
/// Swift: the type macros expand to `H5open(), H5T_NATIVE_FLOAT_g`, so we call `H5open()` once
/// and then read the `…_g` globals; the property-list/selection defaults are plain `0`.
public enum HDF5Reader {
    /// Datasets read into arrays, and string/scalar metadata.
    public static func read(path: String) throws -> (arrays: [String: NumpyArray], metadata: [String: String]) {
        lock.lock()
        defer { lock.unlock() }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw DatasetError(.io, file: path, "cannot read file (missing or unreadable)")
        }
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        _ = H5open()
        _ = H5Eset_auto2(hDefault, nil, nil)
        guard H5Fis_hdf5(path) > 0 else {
            throw DatasetError(.hdf5, file: path, "not an HDF5 file (no HDF5 signature)")
        }
        let fid = H5Fopen(path, 0 /* H5F_ACC_RDONLY */, hDefault)
        guard fid >= 0 else { throw DatasetError(.hdf5, file: path, "libhdf5 cannot open the file: \(lastError())") }
        defer { H5Fclose(fid) }

        var arrays: [String: NumpyArray] = [:]
        var metadata: [String: String] = [:]
        for (k, v) in attributes(of: fid) { metadata[k] = v }
        for name in try children(of: fid, file: path) {
            let oid = H5Oopen(fid, name, hDefault)
            guard oid >= 0 else { throw DatasetError(.hdf5, file: path, key: name, "cannot open object: \(lastError())") }
            defer { H5Oclose(oid) }
            switch H5Iget_type(oid) {
            case H5I_DATASET:
                let required = requiredKeys.contains(name)
                do {
                    switch try readDataset(oid, file: path, key: name, fileSize: fileSize, required: required) {
                    case .array(let a): arrays[name] = a
                    case .strings(let s): metadata[name] = s.count == 1 ? s[0] : "[" + s.joined(separator: ", ") + "]"
                    case .skipped(let why): metadata[name] = "<\(why)>"
                    }
                } catch let e as DatasetError where !required {
                    metadata[name] = "<unreadable: \(e.detail)>"  // an odd extra dataset must not block loading
                }
            case H5I_GROUP where name == "metadata":
                for (k, v) in attributes(of: oid) { metadata["metadata/" + k] = v }
                for child in (try? children(of: oid, file: path)) ?? [] {
                    let cid = H5Dopen2(oid, child, hDefault)
                    guard cid >= 0 else { continue }  // subgroups (e.g. policy weights)
                    defer { H5Dclose(cid) }
                    guard let r = try? readDataset(cid, file: path, key: "metadata/" + child, fileSize: fileSize, required: false, scalarOnly: true)
                    else { continue }
                    switch r {
                    case .array(let a): if let v = a.doubles()?.first { metadata["metadata/" + child] = formatScalar(v, a.dtype) }
                    case .strings(let s): if let v = s.first { metadata["metadata/" + child] = v }
                    case .skipped: break
                    }
                }
            default:
                break  // infos/…, other groups
            }
        }
        return (arrays, metadata)
    }

    static let requiredKeys: Set<String> = ["observations", "actions", "rewards", "next_observations", "terminals", "timeouts"]
    /// H5P_DEFAULT, H5S_ALL and H5E_DEFAULT are all `(hid_t)0`.
    static let hDefault: hid_t = 0
    /// libhdf5 may be built without thread safety: all calls go through this lock.
    static let lock = NSLock()

    enum DatasetContent { case array(NumpyArray), strings([String]), skipped(String) }

    static func lastError() -> String {
        var message = ""
        let box = Unmanaged.passRetained(MessageBox())
        defer { box.release() }
        H5Ewalk2(
            hDefault, H5E_WALK_DOWNWARD,
            { _, desc, data in
                guard let desc, let data else { return 0 }
                let b = Unmanaged<MessageBox>.fromOpaque(data).takeUnretainedValue()
                if b.text.isEmpty, let m = desc.pointee.desc { b.text = String(cString: m) }
                return 0
            }, box.toOpaque())
        message = box.takeUnretainedValue().text
        return message.isEmpty ? "unknown HDF5 error" : message
    }

    final class MessageBox { var text = ""; var names: [String] = [] }

    /// Names of the links directly inside a group, in name order.
    static func children(of gid: hid_t, file: String) throws -> [String] {
        var info = H5G_info_t()
        guard H5Gget_info(gid, &info) >= 0 else { throw DatasetError(.hdf5, file: file, "cannot list group: \(lastError())") }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let len = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, hDefault)
            guard len >= 0, len < 4096 else { continue }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            _ = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(len) + 1, hDefault)
            names.append(String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// String attributes and numeric scalar attributes of an object.
    static func attributes(of oid: hid_t) -> [String: String] {
        let box = Unmanaged.passRetained(MessageBox())
        defer { box.release() }
        var idx: hsize_t = 0
        _ = H5Aiterate2(
            oid, H5_INDEX_NAME, H5_ITER_INC, &idx,
            { _, name, _, data in
                guard let name, let data else { return 0 }
                Unmanaged<MessageBox>.fromOpaque(data).takeUnretainedValue().names.append(String(cString: name))
                return 0
            }, box.toOpaque())
        var out: [String: String] = [:]
        for name in box.takeUnretainedValue().names {
            let aid = H5Aopen(oid, name, hDefault)
            guard aid >= 0 else { continue }
            defer { H5Aclose(aid) }
            let tid = H5Aget_type(aid), sid = H5Aget_space(aid)
            defer { H5Tclose(tid); H5Sclose(sid) }
            let n = H5Sget_simple_extent_npoints(sid)
            guard n >= 1, n <= 64 else { continue }
            switch H5Tget_class(tid) {
            case H5T_STRING:
                if let s = readStrings(tid, count: Int(n), read: { mt, buf in H5Aread(aid, mt, buf) }) {
                    out[name] = s.count == 1 ? s[0] : "[" + s.joined(separator: ", ") + "]"
                }
            case H5T_FLOAT, H5T_INTEGER:
                guard n == 1 else { continue }
                var v: Double = 0
                if H5Aread(aid, H5T_NATIVE_DOUBLE_g, &v) >= 0 {
                    out[name] = H5Tget_class(tid) == H5T_INTEGER ? String(Int64(v)) : "\(v)"
                }
            default:
                continue
            }
        }
        return out
    }

    /// Reads `count` strings (fixed-length or variable-length) through `read(memType, buffer)`.
    static func readStrings(_ tid: hid_t, count: Int, read: (hid_t, UnsafeMutableRawPointer) -> herr_t) -> [String]? {
        if H5Tis_variable_str(tid) > 0 {
            let mt = H5Tcopy(H5T_C_S1_g)
            defer { H5Tclose(mt) }
            _ = H5Tset_size(mt, Int(bitPattern: UInt.max))  // H5T_VARIABLE = (size_t)-1
            _ = H5Tset_cset(mt, H5Tget_cset(tid))
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            let ok = ptrs.withUnsafeMutableBytes { read(mt, $0.baseAddress!) } >= 0
            defer { for p in ptrs where p != nil { H5free_memory(p) } }
            guard ok else { return nil }
            return ptrs.map { $0.map { String(cString: $0) } ?? "" }
        }
        let size = H5Tget_size(tid)
        guard size > 0, size <= 1 << 20 else { return nil }
        let mt = H5Tcopy(tid)
        defer { H5Tclose(mt) }
        var buf = [UInt8](repeating: 0, count: size * count)
        guard buf.withUnsafeMutableBytes({ read(mt, $0.baseAddress!) }) >= 0 else { return nil }
        return (0..<count).map { i in
            let chunk = buf[(i * size)..<((i + 1) * size)]
            let trimmed = chunk.prefix { $0 != 0 }
            return String(decoding: trimmed, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }
    }

    static func formatScalar(_ v: Double, _ dtype: NumpyDType) -> String {
        switch dtype {
        case .float32: return "\(Float(v))"
        case .float64: return "\(v)"
        default: return String(Int64(v))
        }
    }

    static func readDataset(_ did: hid_t, file: String, key: String, fileSize: Int, required: Bool, scalarOnly: Bool = false) throws -> DatasetContent {
        func fail(_ k: DatasetError.Kind, _ msg: String) -> DatasetError { DatasetError(k, file: file, key: key, msg) }
        let tid = H5Dget_type(did), sid = H5Dget_space(did)
        defer { H5Tclose(tid); H5Sclose(sid) }
        guard tid >= 0, sid >= 0 else { throw fail(.hdf5, "cannot read type/dataspace: \(lastError())") }
        let rank = H5Sget_simple_extent_ndims(sid)
        guard rank >= 0, rank <= 32 else { throw fail(.hdf5, "unreadable dataspace") }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        _ = H5Sget_simple_extent_dims(sid, &dims, nil)
        let shape = dims.map { Int(clamping: $0) }
        guard let count = NumpyArray.elementCount(shape) else { throw fail(.sizeOutOfRange, "shape \(shape) has an absurd element count") }
        if scalarOnly && count != 1 { return .skipped("not scalar") }
        let cls = H5Tget_class(tid)
        let size = H5Tget_size(tid)

        if cls == H5T_STRING {
            guard count <= 4096 else { return .skipped("string array of \(count) elements") }
            guard let s = readStrings(tid, count: count, read: { mt, buf in H5Dread(did, mt, hDefault, hDefault, hDefault, buf) })
            else { throw fail(.hdf5, "cannot read strings: \(lastError())") }
            return .strings(s)
        }

        let dtype: NumpyDType
        let memType: hid_t
        var ownedMemType: hid_t = -1
        defer { if ownedMemType >= 0 { H5Tclose(ownedMemType) } }
        switch cls {
        case H5T_FLOAT:
            if size == 4 { dtype = .float32; memType = H5T_NATIVE_FLOAT_g } else { dtype = .float64; memType = H5T_NATIVE_DOUBLE_g }
        case H5T_INTEGER:
            if size == 1 && H5Tget_sign(tid) == H5T_SGN_NONE { dtype = .uint8; memType = H5T_NATIVE_UINT8_g } else { dtype = .int64; memType = H5T_NATIVE_INT64_g }
        case H5T_ENUM where size == 1:
            // h5py stores numpy bool as an enum {FALSE = 0, TRUE = 1} over int8.
            dtype = .bool
            ownedMemType = H5Tget_native_type(tid, H5T_DIR_DEFAULT)
            memType = ownedMemType
        default:
            if required { throw fail(.unsupportedDtype, "unsupported HDF5 type (class \(cls.rawValue), \(size) bytes)") }
            return .skipped("unsupported HDF5 type")
        }
        let (nbytes, o) = count.multipliedReportingOverflow(by: dtype.itemSize)
        // Declared size must fit in what the file could hold: stored bytes (allowing for
        // gzip-compressed chunks at most ~1032:1) and never more than 1032 × the file size.
        let stored = Int(clamping: H5Dget_storage_size(did))
        guard !o, stored <= fileSize, nbytes <= max(stored, 1) &* 1032, nbytes <= max(fileSize, 1) &* 1032 else {
            throw fail(.sizeOutOfRange, "declared shape \(shape) (\(o ? "overflow" : String(nbytes)) bytes) is larger than the \(fileSize)-byte file can hold (\(stored) bytes stored)")
        }
        var bytes = [UInt8](repeating: 0, count: nbytes)
        if nbytes > 0 {
            let r = bytes.withUnsafeMutableBytes { H5Dread(did, memType, hDefault, hDefault, hDefault, $0.baseAddress!) }
            guard r >= 0 else { throw fail(.hdf5, "H5Dread failed: \(lastError())") }
        }
        if dtype == .bool {
            for i in bytes.indices where bytes[i] > 1 { bytes[i] = 1 }
        }
        #if _endian(big)
            // Native memory types are big-endian here; NumpyArray holds little-endian bytes.
            if dtype.itemSize > 1 { for i in stride(from: 0, to: nbytes, by: dtype.itemSize) { bytes[i..<(i + dtype.itemSize)].reverse() } }
        #endif
        return .array(NumpyArray(unchecked: dtype, shape: shape, bytes: bytes))
    }
}
