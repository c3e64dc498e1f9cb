import FlowgateProtocol

extension ModelInfo {
    /// This model as `info` shows it: provenance (dataset, seed, git commit, ...) only when the
    /// server is configured to expose it (`expose_provenance`), otherwise an empty map.
    func exposingProvenance(_ expose: Bool) -> ModelInfo {
        guard !expose else { return self }
        var copy = self
        copy.provenance = [:]
        return copy
    }
}
