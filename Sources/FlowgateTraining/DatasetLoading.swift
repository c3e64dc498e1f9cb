import Foundation

extension OfflineDataset {
    /// Loads a D4RL-style dataset, dispatching on the extension: `.npz` (numpy, stored or
    /// compressed, ZIP64) or `.hdf5` / `.h5` (D4RL layout as written by h5py).
    ///
    /// Rules (see `init(arrays:source:metadata:)` for the details):
    /// - required: `observations` (N×obs), `actions` (N×act), `rewards` (N or N×1);
    /// - `terminals` / `timeouts` (N or N×1, values 0/1): each may be missing (then all false), but
    ///   not both — without either there is no way to tell where episodes end;
    /// - `next_observations` optional: derived from the next row when absent;
    /// - everything else becomes `metadata`.
    public static func load(path: String) throws -> OfflineDataset {
        let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
        switch ext {
        case "npz":
            return try OfflineDataset(arrays: NpzArchive.read(path: path), source: path)
        case "hdf5", "h5":
            let (arrays, metadata) = try HDF5Reader.read(path: path)
            return try OfflineDataset(arrays: arrays, source: path, metadata: metadata)
        default:
            throw DatasetError(.unsupportedFormat, file: path, "unsupported dataset extension '.\(ext)' (expected .npz, .hdf5 or .h5)")
        }
    }

    /// Builds and validates a dataset from named arrays (as read from a file).
    ///
    /// - Shapes must agree on N; `rewards`, `terminals`, `timeouts` may be N or N×1.
    /// - Numeric keys must have a numeric dtype and be finite everywhere; the error names the key
    ///   and the first bad row.
    /// - A row with both `terminals` and `timeouts` set is rejected.
    /// - `next_observations` absent: row i gets row i+1's observation when row i is neither terminal
    ///   nor timeout nor the last row. Timeout rows and a final unflagged row cannot be completed
    ///   and are dropped (count in `metadata["dropped_rows"]`). Terminal rows are kept — their
    ///   next observation is never bootstrapped from, and dropping them would erase every
    ///   termination from the data — with the row's own observation as `nextObservations`.
    /// - The d4rl-pybullet one-row shift is detected by its fingerprint (every terminal row has an
    ///   exactly-zero action and every episode starts with an exactly-zero reward) and rejected.
    /// - Every other array becomes `metadata` (0-d/1-d strings, numbers; big arrays summarised).
    public init(arrays: [String: NumpyArray], source: String, metadata extraMetadata: [String: String] = [:]) throws {
        func fail(_ k: DatasetError.Kind, _ key: String?, _ msg: String) -> DatasetError {
            DatasetError(k, file: source, key: key, msg)
        }
        func required(_ key: String) throws -> NumpyArray {
            guard let a = arrays[key] else {
                throw fail(.missingKey, key, "required array is missing (found: \(arrays.keys.sorted().joined(separator: ", ")))")
            }
            return a
        }
        /// Checks a numeric matrix/vector and converts it to Float.
        func numeric(_ key: String, _ a: NumpyArray, rows: Int?, width: Int?, allowColumn: Bool = false) throws -> (rows: Int, width: Int, values: [Float]) {
            guard a.dtype.isNumeric else {
                throw fail(.unsupportedDtype, key, "dtype \(a.dtype) is not numeric")
            }
            let r: Int, w: Int
            switch a.shape.count {
            case 1 where width == nil || width == 1 && allowColumn:
                r = a.shape[0]; w = 1
            case 2 where !(allowColumn && a.shape[1] != 1):
                r = a.shape[0]; w = a.shape[1]
            default:
                let want = allowColumn ? "(N,) or (N, 1)" : "(N, dim)"
                throw fail(.shapeMismatch, key, "shape \(a.shape) is not \(want)")
            }
            if let rows, r != rows {
                throw fail(.shapeMismatch, key, "has \(r) rows but observations has \(rows)")
            }
            if let width, w != width {
                throw fail(.shapeMismatch, key, "has width \(w), expected \(width)")
            }
            guard w > 0 || r == 0 else { throw fail(.shapeMismatch, key, "shape \(a.shape) has zero width") }
            let values = a.floats()!
            if a.dtype.isFloatingPoint {
                // float64 values beyond Float range also become inf here, and are rejected.
                if let bad = Self.firstNonFinite(values) {
                    throw fail(.nonFinite, key, "non-finite value \(values[bad]) at row \(bad / max(w, 1)) (column \(bad % max(w, 1)))")
                }
            }
            return (r, w, values)
        }
        func flags(_ key: String, rows: Int) throws -> [Bool]? {
            guard let a = arrays[key] else { return nil }
            if case .unicode = a.dtype {
                throw fail(.unsupportedDtype, key, "dtype \(a.dtype) is not a flag type")
            }
            guard a.shape == [rows] || a.shape == [rows, 1] else {
                throw fail(.shapeMismatch, key, "shape \(a.shape) is not (\(rows),) or (\(rows), 1)")
            }
            let v = a.floats()!
            if let bad = v.firstIndex(where: { $0 != 0 && $0 != 1 }) {
                throw fail(.invalidFlags, key, "value \(v[bad]) at row \(bad) is not 0/1")
            }
            return v.map { $0 != 0 }
        }

        let obsArray = try required("observations")
        let obs = try numeric("observations", obsArray, rows: nil, width: nil)
        guard obsArray.shape.count == 2 else { throw fail(.shapeMismatch, "observations", "shape \(obsArray.shape) is not (N, obs_dim)") }
        let n = obs.rows
        guard n > 0 else { throw fail(.shapeMismatch, "observations", "dataset has no rows") }
        let actArray = try required("actions")
        guard actArray.shape.count == 2 else { throw fail(.shapeMismatch, "actions", "shape \(actArray.shape) is not (N, act_dim)") }
        let act = try numeric("actions", actArray, rows: n, width: nil)
        let rew = try numeric("rewards", try required("rewards"), rows: n, width: 1, allowColumn: true)
        var next: [Float]? = nil
        if let a = arrays["next_observations"] {
            guard a.shape.count == 2 else { throw fail(.shapeMismatch, "next_observations", "shape \(a.shape) is not (N, obs_dim)") }
            next = try numeric("next_observations", a, rows: n, width: obs.width).values
        }
        let term = try flags("terminals", rows: n)
        let tout = try flags("timeouts", rows: n)
        guard term != nil || tout != nil else {
            throw fail(
                .missingKey, "terminals",
                "neither 'terminals' nor 'timeouts' is present, so episode ends are unknown (D4RL files always have 'terminals')")
        }
        let terminals = term ?? [Bool](repeating: false, count: n)
        let timeouts = tout ?? [Bool](repeating: false, count: n)
        if let row = (0..<n).first(where: { terminals[$0] && timeouts[$0] }) {
            throw fail(.invalidFlags, "terminals", "row \(row) is marked both terminal and timeout")
        }
        let obsDim = obs.width, actDim = act.width
        try Self.rejectPyBulletShift(actions: act.values, actDim: actDim, rewards: rew.values, terminals: terminals, timeouts: timeouts, source: source)

        var metadata = extraMetadata
        for (key, a) in arrays where !Self.datasetKeys.contains(key) {
            metadata[key] = Self.metadataString(a)
        }

        guard let next else {
            // Derive next observations within episodes.
            var keep: [Int] = []
            keep.reserveCapacity(n)
            for i in 0..<n where terminals[i] || (!timeouts[i] && i + 1 < n) { keep.append(i) }
            var o = [Float](), a = [Float](), no = [Float](), r = [Float](), te = [Bool](), to = [Bool]()
            o.reserveCapacity(keep.count * obsDim); no.reserveCapacity(keep.count * obsDim); a.reserveCapacity(keep.count * actDim)
            for i in keep {
                o.append(contentsOf: obs.values[(i * obsDim)..<((i + 1) * obsDim)])
                a.append(contentsOf: act.values[(i * actDim)..<((i + 1) * actDim)])
                let j = terminals[i] ? i : i + 1
                no.append(contentsOf: obs.values[(j * obsDim)..<((j + 1) * obsDim)])
                r.append(rew.values[i]); te.append(terminals[i]); to.append(false)
            }
            metadata["next_observations"] = "derived from the next row"
            metadata["dropped_rows"] = String(n - keep.count)
            guard !keep.isEmpty else {
                throw fail(.shapeMismatch, "next_observations", "absent and cannot be derived for any row")
            }
            self.init(
                source: source, observationDim: obsDim, actionDim: actDim, observations: o, actions: a, rewards: r,
                nextObservations: no, terminals: te, timeouts: to, metadata: metadata)
            return
        }
        self.init(
            source: source, observationDim: obsDim, actionDim: actDim, observations: obs.values, actions: act.values,
            rewards: rew.values, nextObservations: next, terminals: terminals, timeouts: timeouts, metadata: metadata)
    }

    static let datasetKeys: Set<String> = ["observations", "actions", "rewards", "next_observations", "terminals", "timeouts"]

    /// d4rl-pybullet stores each reward one row late, ends every episode with an extra zero-action
    /// row, and records time-limit ends as terminals. Its fingerprint, cheap to check: at least one
    /// terminal, every terminal row's action exactly zero, and every episode's first reward exactly
    /// zero. A real policy essentially never emits an all-zero action on every terminal row.
    static func rejectPyBulletShift(actions: [Float], actDim: Int, rewards: [Float], terminals: [Bool], timeouts: [Bool], source: String) throws {
        var terminalCount = 0
        for i in terminals.indices where terminals[i] {
            terminalCount += 1
            for k in 0..<actDim where actions[i * actDim + k] != 0 { return }
        }
        guard terminalCount > 0, rewards[0] == 0 else { return }
        for i in 0..<(rewards.count - 1) where (terminals[i] || timeouts[i]) && rewards[i + 1] != 0 { return }
        throw DatasetError(
            .shiftedLayout, file: source, key: "rewards",
            "looks like a d4rl-pybullet file (every terminal row has a zero action and every episode starts with reward 0): rewards are shifted one row and time-limit ends are stored as terminals; convert it to the D4RL layout first")
    }

    /// Index of the first NaN/inf, if any.
    static func firstNonFinite(_ v: [Float]) -> Int? {
        v.withUnsafeBufferPointer { p in
            for i in 0..<p.count where !p[i].isFinite { return i }
            return nil
        }
    }

    /// How a non-dataset array is recorded in `metadata`: strings and numbers as text (up to 64
    /// elements), larger arrays as a dtype/shape summary.
    static func metadataString(_ a: NumpyArray) -> String {
        if let s = a.strings() {
            if a.shape.isEmpty, let v = s.first { return v }
            if s.count <= 64 { return "[" + s.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        } else if a.count <= 64, let d = a.doubles() {
            let items = d.map { HDF5Reader.formatScalar($0, a.dtype == .bool ? .int64 : a.dtype) }
            if a.shape.isEmpty, let v = items.first { return v }
            if a.shape.count == 1 { return "[" + items.joined(separator: ", ") + "]" }
        }
        return "<\(a.dtype) array, shape \(a.shape)>"
    }
}
