import FlowgateCommon
import Foundation

/// A configuration that a JSON object of overrides can be merged into: `flowgate train --config`
/// and `--energy-config` files, the energy experiment's overrides, and configs saved in checkpoints
/// written before a field existed. The one JSON-override merger; only the configs opt in.
public protocol JSONOverridable: Codable {}

extension TrainingConfig: JSONOverridable {}
extension EnergyTrainingConfig: JSONOverridable {}

extension JSONOverridable {
    /// This value with the fields of a JSON object merged in: nested objects merge, missing keys
    /// keep this value's fields, unknown keys are errors (a typo in a config file must not pass
    /// silently).
    public func merging(json data: Data) throws -> Self {
        guard let overrides = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TrainingError.invalidConfig("not a JSON object")
        }
        let baseObject = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as! [String: Any]
        func merge(_ b: [String: Any], _ o: [String: Any], at path: String) throws -> [String: Any] {
            var r = b
            for (k, v) in o {
                guard let existing = b[k] else { throw TrainingError.invalidConfig("unknown key '\(path)\(k)'") }
                if let eb = existing as? [String: Any], let ov = v as? [String: Any] {
                    r[k] = try merge(eb, ov, at: path + k + ".")
                } else {
                    r[k] = v
                }
            }
            return r
        }
        let merged = try merge(baseObject, overrides, at: "")
        do {
            return try JSONDecoder().decode(Self.self, from: JSONSerialization.data(withJSONObject: merged))
        } catch {
            throw TrainingError.invalidConfig(readableError(error))
        }
    }
}
