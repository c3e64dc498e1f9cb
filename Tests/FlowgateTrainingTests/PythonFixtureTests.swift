import Foundation
import Testing
@testable import FlowgateTraining

/// Fixtures written by the real counterparts (numpy, h5py) during the run, compared exactly.
@Suite("numpy / h5py fixtures", .enabled(if: PythonFixtures.mustRun, Comment(rawValue: PythonFixtures.skipMessage)))
struct PythonFixtureTests {
    static let npzScript = #"""
        import sys, json, zipfile, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(7)
        n = 9
        obs = rng.standard_normal((n, 3)).astype(np.float32)
        nxt = rng.standard_normal((n, 3)).astype(np.float32)
        act = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        rew = rng.standard_normal(n).astype(np.float32)
        term = np.zeros(n, bool); term[3] = True
        tout = np.zeros(n, bool); tout[8] = True
        extra = dict(
            env=np.array("hopper-medium-v2"),
            ref_random_return=np.array(20.06),
            episode_returns=np.array([1.5, -2.25]),
            tags=np.array(["a", "béta"]),
            i8=np.array([-3, 2**40], dtype="<i8"),
            i4=np.array([[-7, 8]], dtype="<i4"),
            u1=np.array([0, 255], dtype=np.uint8),
        )
        d = dict(observations=obs, next_observations=nxt, actions=act, rewards=rew, terminals=term, timeouts=tout)
        np.savez(out + "/stored.npz", **d, **extra)
        np.savez_compressed(out + "/compressed.npz", **d, **extra)
        # ZIP64 local headers written explicitly, deflated (numpy's own savez also forces ZIP64).
        d64 = dict(d, observations=obs.astype(np.float64), rewards=rew[:, None])
        with zipfile.ZipFile(out + "/zip64.npz", "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for k, v in d64.items():
                with zf.open(k + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, v, allow_pickle=False)
        with open(out + "/v2.npy", "wb") as f:
            np.lib.format.write_array(f, act, version=(2, 0))
        with open(out + "/v3.npy", "wb") as f:
            np.lib.format.write_array(f, act, version=(3, 0))
        np.save(out + "/fortran.npy", np.asfortranarray(obs))
        np.savez(out + "/bigendian.npz", observations=obs.astype(">f4"))
        H = lambda a: [float(x).hex() for x in np.asarray(a, dtype=np.float64).ravel()]
        exp = {k: H(v) for k, v in d.items()}
        exp["i8"] = H([-3.0, float(2**40)])
        with open(out + "/expected.json", "w") as f:
            json.dump(exp, f)
        """#

    static let hdf5Script = #"""
        import sys, json, numpy as np, h5py
        out = sys.argv[1]
        rng = np.random.default_rng(11)
        n = 8
        obs = rng.standard_normal((n, 4)).astype(np.float32)
        act = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        rew = rng.standard_normal(n)  # float64 on disk
        term = np.zeros(n, bool); term[2] = True
        tout = np.zeros(n, bool); tout[5] = True
        with h5py.File(out + "/d4rl.hdf5", "w") as f:
            f["observations"] = obs
            f.create_dataset("actions", data=act, compression="gzip", chunks=(4, 2))
            f["rewards"] = rew
            f["terminals"] = term
            f["timeouts"] = tout
            f["infos/qpos"] = rng.standard_normal((n, 5))
            f["infos/action_log_probs"] = rng.standard_normal(n)
            f["metadata/algorithm"] = "SAC"
            f["metadata/policy/fc0/weight"] = rng.standard_normal((3, 3))
            f["metadata"].attrs["collector"] = "flowgate"
            f.attrs["env"] = "bullet-hopper"
            f.attrs["ref_max_score"] = 2479.5
            f["env_name"] = "HopperBulletEnv"
        with h5py.File(out + "/noterminals.h5", "w") as f:
            f["observations"] = obs
            f["actions"] = act
            f["rewards"] = rew.astype(np.float32)
        with open(out + "/expected.json", "w") as f:
            H = lambda a: [float(x).hex() for x in np.asarray(a, dtype=np.float64).ravel()]
            json.dump({"observations": H(obs), "actions": H(act), "rewards": H(rew), "terminals": H(term), "timeouts": H(tout)}, f)
        """#

    func checkD4RL(_ ds: OfflineDataset, _ exp: [String: [Double]], obsDim: Int, actDim: Int) {
        #expect(ds.observationDim == obsDim)
        #expect(ds.actionDim == actDim)
        #expect(ds.observations == exp["observations"]!.map { Float($0) })
        #expect(ds.actions == exp["actions"]!.map { Float($0) })
        #expect(ds.rewards == exp["rewards"]!.map { Float($0) })
        #expect(ds.terminals == exp["terminals"]!.map { $0 != 0 })
        #expect(ds.timeouts == exp["timeouts"]!.map { $0 != 0 })
        if let next = exp["next_observations"] { #expect(ds.nextObservations == next.map { Float($0) }) }
    }

    @Test func npzWrittenByNumpy() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try PythonFixtures.run(Self.npzScript, args: [dir.path])
        let exp = try PythonFixtures.expected(dir)
        for name in ["stored.npz", "compressed.npz", "zip64.npz"] {
            let ds = try OfflineDataset.load(path: dir.appendingPathComponent(name).path)
            checkD4RL(ds, exp, obsDim: 3, actDim: 2)
            #expect(ds.count == 9)
            if name != "zip64.npz" {
                #expect(ds.metadata["env"] == "hopper-medium-v2")
                #expect(ds.metadata["ref_random_return"] == "20.06")
                #expect(ds.metadata["episode_returns"] == "[1.5, -2.25]")
                #expect(ds.metadata["tags"] == "[\"a\", \"béta\"]")
                #expect(ds.metadata["u1"] == "[0, 255]")
                let raw = try NpzArchive.read(path: dir.appendingPathComponent(name).path)
                #expect(raw["i8"]?.dtype == .int64)
                #expect(raw["i8"]?.doubles() == exp["i8"])
                #expect(raw["i4"]?.shape == [1, 2])
                #expect(raw["i4"]?.floats() == [-7, 8])
                #expect(raw["env"]?.shape == [])
                #expect(raw["env"]?.dtype == .unicode(chars: 16))
            }
        }
        for name in ["v2.npy", "v3.npy"] {
            let a = try NumpyFormat.readNpy(path: dir.appendingPathComponent(name).path)
            #expect(a.shape == [9, 2])
            #expect(a.floats() == exp["actions"]!.map { Float($0) })
        }
        let fortranPath = dir.appendingPathComponent("fortran.npy").path
        expectDatasetError(.fortranOrder, file: fortranPath, key: nil) { _ = try NumpyFormat.readNpy(path: fortranPath) }
        let bigPath = dir.appendingPathComponent("bigendian.npz").path
        expectDatasetError(.bigEndian, file: bigPath, key: "observations") { _ = try OfflineDataset.load(path: bigPath) }
    }

    @Test func hdf5WrittenByH5py() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try PythonFixtures.run(Self.hdf5Script, args: [dir.path])
        let exp = try PythonFixtures.expected(dir)
        let path = dir.appendingPathComponent("d4rl.hdf5").path
        let ds = try OfflineDataset.load(path: path)
        // next_observations is absent: rows 5 (timeout) and 7 (last) are dropped.
        #expect(ds.count == 6)
        #expect(ds.metadata["dropped_rows"] == "2")
        let keep = [0, 1, 2, 3, 4, 6]
        let o = exp["observations"]!.map { Float($0) }, a = exp["actions"]!.map { Float($0) }
        let r = exp["rewards"]!.map { Float($0) }
        #expect(ds.observations == keep.flatMap { o[($0 * 4)..<($0 * 4 + 4)] })
        #expect(ds.actions == keep.flatMap { a[($0 * 2)..<($0 * 2 + 2)] })
        #expect(ds.rewards == keep.map { r[$0] })
        #expect(ds.terminals == [false, false, true, false, false, false])
        // Row 2 is terminal (own observation), others get the next row's observation.
        let nextRows = [1, 2, 2, 4, 5, 7]
        #expect(ds.nextObservations == nextRows.flatMap { o[($0 * 4)..<($0 * 4 + 4)] })
        #expect(ds.metadata["env"] == "bullet-hopper")
        #expect(ds.metadata["ref_max_score"] == "2479.5")
        #expect(ds.metadata["env_name"] == "HopperBulletEnv")
        #expect(ds.metadata["metadata/algorithm"] == "SAC")
        #expect(ds.metadata["metadata/collector"] == "flowgate")
        #expect(!ds.metadata.keys.contains { $0.hasPrefix("infos") })

        let raw = try HDF5Reader.read(path: path)
        #expect(raw.arrays["rewards"]?.dtype == .float64)
        #expect(raw.arrays["rewards"]?.doubles() == exp["rewards"])
        #expect(raw.arrays["terminals"]?.dtype == .bool)

        let noFlags = dir.appendingPathComponent("noterminals.h5").path
        expectDatasetError(.missingKey, file: noFlags, key: "terminals") { _ = try OfflineDataset.load(path: noFlags) }
    }

    /// Load speed on a D4RL-sized file; opt-in (FLOWGATE_PERF=1) because debug builds are slow.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FLOWGATE_PERF"] != nil))
    func loadSpeed200kBy15() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try PythonFixtures.run(
            #"""
            import sys, numpy as np
            rng = np.random.default_rng(0); n = 200_000
            d = dict(observations=rng.standard_normal((n, 15), dtype=np.float32), next_observations=rng.standard_normal((n, 15), dtype=np.float32),
                     actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32), rewards=rng.standard_normal(n, dtype=np.float32),
                     terminals=np.zeros(n, bool), timeouts=(np.arange(n) % 1000 == 999))
            np.savez(sys.argv[1] + "/big.npz", **d); np.savez_compressed(sys.argv[1] + "/bigc.npz", **d)
            import h5py
            with h5py.File(sys.argv[1] + "/big.hdf5", "w") as f:
                for k, v in d.items(): f[k] = v
            """#, args: [dir.path])
        for name in ["big.npz", "bigc.npz", "big.hdf5"] {
            let clock = ContinuousClock()
            var ds: OfflineDataset?
            let t = try clock.measure { ds = try OfflineDataset.load(path: dir.appendingPathComponent(name).path) }
            print("load \(name): \(t) for \(ds!.count) rows")
            #expect(ds!.count == 200_000)
        }
    }
}
