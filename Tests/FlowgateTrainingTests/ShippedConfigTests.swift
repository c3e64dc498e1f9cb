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
        // The QIPO base, trained before distil and straighten were the default: the file says so,
        // so that the card's `train` command still reproduces it (hopper-medium's card then runs
        // `flowgate refine --distil`, which adds them; the manifest records the result, below).
        #expect(config.distil.steps == 0 && config.straighten.steps == 0)
    }

    /// What each card says about the shipped policy: hopper-medium ships its QIPO base refined by
    /// `flowgate refine --distil` (annealed distil and straighten, 8000 steps each, since
    /// 2026-12-04); the other two ship their QIPO policies. The manifest's provenance records it.
    @Test(
        "every shipped manifest records the few-step phases its card names",
        arguments: [("hopper-medium", 8000), ("hopper-medium-replay", 0), ("inverted-double-pendulum-medium", 0)])
    func shippedPhases(model: String, steps: Int) throws {
        let data = try Data(contentsOf: Self.models.appendingPathComponent("\(model)/manifest.json"))
        let manifest = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let provenance = try #require(manifest["provenance"] as? [String: Any])
        let recorded = try #require(provenance["trainingSteps"] as? [String: Int])
        #expect((recorded["distil"] ?? 0) == steps && (recorded["straighten"] ?? 0) == steps)
        // Read as `refine` reads it (fields an older version recorded and this one dropped, such as
        // sampling.solver, are ignored).
        let config = try ReflowRefinement(modelPath: Self.models.appendingPathComponent(model).path).trainedConfig
        #expect(config.distil.steps == steps && config.straighten.steps == steps)
        if steps > 0 {
            #expect(config.distil.annealShare == 0.5 && config.straighten.annealShare == 0.5)
        }
    }
}
