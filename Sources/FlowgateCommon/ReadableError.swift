import Foundation

/// A decoding error as a person reads it: the path of the offending key, then what was wrong
/// ("batchSize: Expected to decode Int but found a string instead."), instead of Foundation's
/// `DecodingError.typeMismatch(…)` dump. Other errors print as they describe themselves.
public func readableError(_ error: any Error) -> String {
    guard let decoding = error as? DecodingError else { return "\(error)" }
    func located(_ context: DecodingError.Context, _ what: String) -> String {
        let path = context.codingPath.reduce(into: "") { path, key in
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += (path.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return path.isEmpty ? what : "\(path): \(what)"
    }
    switch decoding {
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
        let underlying = (context.underlyingError as? NSError).map { " (\($0.localizedDescription))" } ?? ""
        return located(context, context.debugDescription + underlying)
    case .keyNotFound(let key, let context):
        return located(context, "missing key '\(key.stringValue)'")
    @unknown default:
        return "\(error)"
    }
}
