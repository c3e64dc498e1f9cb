import Foundation
import Testing
@testable import FlowgateTraining

@Suite struct DatasetSemanticsTests {
    /// Three episodes without next_observations: rows 0–2 end terminal, rows 3–4 end in a
    /// timeout, rows 5–6 run off the end of the data. Observation of row i is (i, 10 i).
    func episodeArrays() -> [String: NumpyArray] {
        [
            "observations": f32((0..<7).flatMap { [Float($0), Float(10 * $0)] }, [7, 2]),
            "actions": f32([1, 2, 3, 4, 5, 6, 7], [7, 1]),
            "rewards": f32([1, 1, 1, 2, 2, 3, 3], [7, 1]),
            "terminals": bools([false, false, true, false, false, false, false]),
            "timeouts": bools([false, false, false, false, true, false, false]),
        ]
    }

    @Test func derivedNextObservations() throws {
        let ds = try OfflineDataset(arrays: episodeArrays(), source: "tiny")
        // Kept rows: 0, 1, 2 (terminal), 3, 5. Dropped: 4 (timeout) and 6 (last, unflagged).
        #expect(ds.count == 5)
        #expect(ds.metadata["dropped_rows"] == "2")
        #expect(ds.actions == [1, 2, 3, 4, 6])
        #expect(ds.rewards == [1, 1, 1, 2, 3])
        #expect(ds.observations == [0, 0, 1, 10, 2, 20, 3, 30, 5, 50])
        #expect(ds.nextObservations == [1, 10, 2, 20, 2, 20, 4, 40, 6, 60])
        #expect(ds.terminals == [false, false, true, false, false])
        #expect(ds.timeouts == [false, false, false, false, false])
        let eps = ds.episodes
        #expect(eps.map(\.start) == [0, 3, 4])
        #expect(eps.map(\.end) == [3, 4, 5])
        #expect(eps.map(\.ending) == [.terminal, .discontinuity, .endOfData])
    }

    @Test func onlyTerminalsOrOnlyTimeouts() throws {
        var a = episodeArrays()
        a["timeouts"] = nil
        let ds = try OfflineDataset(arrays: a, source: "t")
        #expect(ds.count == 6)  // only the last row is dropped
        a["terminals"] = nil
        expectDatasetError(.missingKey, file: "t", key: "terminals") { _ = try OfflineDataset(arrays: a, source: "t") }
    }

    @Test func flagValuesMustBeZeroOrOne() throws {
        var a = episodeArrays()
        let flags = try NumpyArray(dtype: .uint8, shape: [7], bytes: [0, 0, 2, 0, 0, 0, 0])
        a["terminals"] = flags
        let e = expectDatasetError(.invalidFlags, file: "t", key: "terminals") { _ = try OfflineDataset(arrays: a, source: "t") }
        #expect(e?.detail.contains("row 2") == true)
    }

    @Test func rewardScalingOverCompleteEpisodes() throws {
        // Stored next_observations; episodes: [0,1] terminal (return 10), [2] timeout (30),
        // [3,4] discontinuity (60), [5] end of data (1000, incomplete: ignored).
        let obs: [Float] = [0, 1, 2, 3, 4, 5]
        let arrays: [String: NumpyArray] = [
            "observations": f32(obs, [6, 1]),
            "next_observations": f32([1, 1, 2, 4, 9, 6], [6, 1]),
            "actions": f32([1, 1, 1, 1, 1, 1], [6, 1]),
            "rewards": f32([4, 6, 30, 20, 40, 1000], [6]),
            "terminals": bools([false, true, false, false, false, false]),
            "timeouts": bools([false, false, true, false, false, false]),
        ]
        let ds = try OfflineDataset(arrays: arrays, source: "r")
        #expect(ds.episodes.map(\.totalReward) == [10, 30, 60, 1000])
        #expect(ds.episodes.map(\.ending) == [.terminal, .timeout, .discontinuity, .endOfData])
        let s = ds.rewardScaling()
        #expect(s == RewardScaling(scale: 20, completeEpisodes: 3, minEpisodeReturn: 10, maxEpisodeReturn: 60, isFallback: false))
        var scaled = ds
        scaled.scaleRewards(by: s.scale)
        #expect(scaled.rewards == [80, 120, 600, 400, 800, 20000])

        // One complete episode: no range, scale 1, flagged as a fallback.
        let one = try OfflineDataset(arrays: tinyDatasetArrays(), source: "one").subset([0, 1, 2])
        let s1 = one.rewardScaling()
        #expect(s1.isFallback && s1.scale == 1 && s1.completeEpisodes == 1 && s1.maxEpisodeReturn == 6)
    }

    @Test func observationNormalizer() throws {
        let arrays: [String: NumpyArray] = [
            "observations": f32([1, 10, 3, 10, 5, 10], [3, 2]),
            "actions": f32([0.5, 0.5, 0.5], [3, 1]),
            "rewards": f32([0, 0, 0], [3]),
            "next_observations": f32([3, 10, 5, 10, 7, 10], [3, 2]),
            "terminals": bools([false, false, true]),
        ]
        var ds = try OfflineDataset(arrays: arrays, source: "n")
        let norm = ObservationNormalizer(dataset: ds)
        #expect(norm.mean == [3, 10])
        #expect(abs(norm.std[0] - Float((8.0 / 3.0).squareRoot())) < 1e-6)
        #expect(norm.std[1] == 1)  // constant dimension: not rescaled, so noise there is not amplified
        var row: [Float] = [3 + norm.std[0], 10.002]
        norm.apply(inPlace: &row)
        #expect(abs(row[0] - 1) < 1e-6 && abs(row[1] - 0.002) < 1e-5)
        norm.denormalize(inPlace: &row)
        #expect(abs(row[0] - (3 + norm.std[0])) < 1e-5)
        ds.normalizeObservations(with: norm)
        #expect(abs(ds.observations[0] + 2 / norm.std[0]) < 1e-5 && ds.observations[1] == 0)
        let json = try JSONEncoder().encode(norm)
        #expect(try JSONDecoder().decode(ObservationNormalizer.self, from: json) == norm)
    }

    @Test func rejectsPyBulletShift() throws {
        // d4rl-pybullet: reward 0 on every episode's first row, zero action on every terminal row.
        let arrays: [String: NumpyArray] = [
            "observations": f32([0, 1, 2, 3, 4, 5], [6, 1]),
            "actions": f32([0.3, 0.2, 0, 0.1, 0.5, 0], [6, 1]),
            "rewards": f32([0, 1, 1, 0, 2, 2], [6]),
            "terminals": bools([false, false, true, false, false, true]),
        ]
        expectDatasetError(.shiftedLayout, file: "pb", key: "rewards") { _ = try OfflineDataset(arrays: arrays, source: "pb") }
        var ok = arrays
        ok["actions"] = f32([0.3, 0.2, 0.4, 0.1, 0.5, 0], [6, 1])
        #expect(try OfflineDataset(arrays: ok, source: "pb").count == 6)
    }

    @Test func metadataFromOtherKeys() throws {
        var a = tinyDatasetArrays()
        a["ref_expert_return"] = try NumpyArray(float64: [2479.5], shape: [])
        a["big"] = f32([Float](repeating: 1, count: 100), [100])
        let ds = try OfflineDataset(arrays: a, source: "m")
        #expect(ds.metadata["ref_expert_return"] == "2479.5")
        #expect(ds.metadata["big"] == "<<f4 array, shape [100]>")
    }
}
