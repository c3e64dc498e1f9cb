import Foundation

/// The settings in which two configs' canonical JSON (`TrainingRun.configJSON`) differ, one line
/// each: `qipo.steps: 200 in the checkpoint, 100 in this run`. Keys are the JSON keys a `--config`
/// file uses, dotted for nested sections; a key present on one side only shows as `absent`. Empty
/// when both parse to the same values; one line naming the problem when either is not JSON.
public func configDifferences(saved: String, current: String) -> [String] {
    guard let a = try? JSONSerialization.jsonObject(with: Data(saved.utf8), options: [.fragmentsAllowed]),
        let b = try? JSONSerialization.jsonObject(with: Data(current.utf8), options: [.fragmentsAllowed])
    else { return ["the checkpoint's config is not readable JSON"] }
    var lines: [String] = []
    collectDifferences(a, b, path: "", into: &lines)
    return lines
}

private func collectDifferences(_ a: Any?, _ b: Any?, path: String, into lines: inout [String]) {
    if let x = a as? [String: Any], let y = b as? [String: Any] {
        for key in Set(x.keys).union(y.keys).sorted() {
            collectDifferences(x[key], y[key], path: path.isEmpty ? key : path + "." + key, into: &lines)
        }
        return
    }
    let left = canonicalJSON(a), right = canonicalJSON(b)
    if left != right { lines.append("\(path): \(left) in the checkpoint, \(right) in this run") }
}

private func canonicalJSON(_ value: Any?) -> String {
    guard let value else { return "absent" }
    guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else {
        return "\(value)"
    }
    return String(decoding: data, as: UTF8.self)
}
