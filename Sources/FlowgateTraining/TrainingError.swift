/// Errors of the training driver, with messages that say what to do.
public enum TrainingError: Error, CustomStringConvertible {
    case io(String)
    case invalidConfig(String)
    case invalidData(String)
    case checkpoint(String)

    public var description: String {
        switch self {
        case .io(let m), .invalidConfig(let m), .invalidData(let m), .checkpoint(let m): return m
        }
    }
}
