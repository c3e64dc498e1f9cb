import Foundation
import Testing

import FlowgateTraining

/// The model cards' training commands pass `--config models/NAME/config.json`: those files must
/// stay loadable as the trainer's config is changed (a removed setting made them fail once).
struct ShippedConfigTests {
    static let models = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("models")

    @Test(
        "every shipped model's config.json loads as a training config and says what the card says",
        arguments: ["hopper-medium", "hopper-medium-replay", "inverted-double-pendulum-medium"])
    func shippedConfigLoads(model: String) throws {
        let data = try Data(contentsOf: Self.models.appendingPathComponent("\(model)/config.json"))
        let config = try TrainingConfig().merging(json: data)
        #expect(config.algorithm == .qipo)
        #expect(config.seed == 0)
        #expect(config.reflow.steps == 0)
        // Trained before distil and straighten were the default: the file says so, so that the
        // card's command still reproduces the shipped model (`flowgate refine --distil` adds them).
        #expect(config.distil.steps == 0 && config.straighten.steps == 0)
    }
}
