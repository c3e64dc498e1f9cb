import Foundation
import Testing

@testable import FlowgateTraining

@Suite("Resuming an interrupted run")
struct ResumeAfterInterruptTests {
    @Test func resumeCommandKeepsEveryFlagAndAddsResumeOnce() {
        let started = [
            ".build/release/flowgate", "train", "--dataset", "data/hopper medium.npz", "--out", "/tmp/m",
            "--qipo-steps", "200", "--energy", "--energy-steps", "50", "--config", "it's.json",
        ]
        #expect(
            ResumeCommandLine.from(arguments: started)
                == ".build/release/flowgate train --dataset 'data/hopper medium.npz' --out /tmp/m --qipo-steps 200 --energy --energy-steps 50 --config 'it'\\''s.json' --resume"
        )
        let resumed = ["flowgate", "train", "--dataset", "d.npz", "--out", "m", "--resume", "--restart-from", "qipo"]
        #expect(ResumeCommandLine.from(arguments: resumed) == "flowgate train --dataset d.npz --out m --resume")
        #expect(
            ResumeCommandLine.from(arguments: ["flowgate", "train", "--restart-from=critic", "--resume"])
                == "flowgate train --resume")
    }

    @Test func configDifferencesNameEverySettingThatDiffers() {
        let saved = #"{"batchSize":256,"qipo":{"beta":1,"steps":200},"seed":0}"#
        let current = #"{"batchSize":256,"qipo":{"beta":1,"steps":100},"seed":0,"extra":true}"#
        #expect(
            configDifferences(saved: saved, current: current) == [
                "extra: absent in the checkpoint, true in this run",
                "qipo.steps: 200 in the checkpoint, 100 in this run",
            ])
        #expect(configDifferences(saved: saved, current: saved).isEmpty)
        #expect(configDifferences(saved: "not json", current: current) == ["the checkpoint's config is not readable JSON"])
    }

    /// The error a user sees when resuming with other flags names the setting.
    @Test func checkpointFromAnotherConfigIsRefusedNamingTheSetting() throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("resume-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = TrainingRunTests.tinyConfig()
        try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: config).saveCheckpoint(to: path)
        var other = config
        other.qipo.steps += 1
        let resumed = try TrainingRun(name: "toy", dataset: TrainingRunTests.dataset(), config: other)
        #expect {
            try resumed.loadCheckpoint(from: path)
        } throws: {
            "\($0)".contains("qipo.steps: \(config.qipo.steps) in the checkpoint, \(other.qipo.steps) in this run")
        }
    }
}
