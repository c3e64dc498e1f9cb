import Foundation

/// The failure-risk signal served beside `reliable` (issue 14): a logistic model over what one
/// `act` already computes (critic value, `E_min`) and, for a named stream, their trends, calibrated
/// on held-out episodes to P(failure within `horizon` steps). Stored in the optional `risk` section
/// of `manifest.json`; a manifest without it loads as before and its replies carry no `risk`.
///
/// Cost per observation: a few dozen floating-point operations, next to the check's millions.
public struct RiskModel: Sendable, Equatable, Codable {
    /// One logistic model: `risk = sigmoid(bias + Σ weights[i] · (feature_i − mean[i]) / std[i])`.
    public struct Logistic: Sendable, Equatable, Codable {
        /// Feature names (see `Features`), in the order of `mean`, `std`, `weights`.
        public var features: [String]
        public var mean: [Double]
        public var std: [Double]
        public var weights: [Double]
        public var bias: Double

        public init(features: [String], mean: [Double], std: [Double], weights: [Double], bias: Double) {
            self.features = features
            self.mean = mean
            self.std = std
            self.weights = weights
            self.bias = bias
        }

        func validate(_ what: String) throws {
            let n = features.count
            guard mean.count == n, std.count == n, weights.count == n else {
                throw RiskModelError("\(what): features, mean, std and weights must have the same length")
            }
            for f in features where !Features.names.contains(f) {
                throw RiskModelError("\(what): unknown feature '\(f)' (known: \(Features.names.sorted().joined(separator: ", ")))")
            }
            guard (mean + std + weights + [bias]).allSatisfy(\.isFinite), std.allSatisfy({ $0 > 0 }) else {
                throw RiskModelError("\(what): numbers must be finite and every std > 0")
            }
        }

        /// P(failure within the horizon) for one observation's features.
        func probability(_ f: Features) -> Float {
            var z = bias
            for i in 0..<features.count {
                z += weights[i] * (f.value(features[i]) - mean[i]) / std[i]
            }
            return Float(1 / (1 + exp(-z)))
        }
    }

    /// When a stream's alarm is raised and cleared.
    public struct AlarmRule: Sendable, Equatable, Codable {
        /// Raise when at least `k` of the last `n` risks are ≥ `on`.
        public var on: Double
        public var k: Int
        public var n: Int
        /// Clear when the last `clearAfter` risks were all < `off`.
        public var off: Double
        public var clearAfter: Int

        public init(on: Double, k: Int, n: Int, off: Double, clearAfter: Int) {
            self.on = on
            self.k = k
            self.n = n
            self.off = off
            self.clearAfter = clearAfter
        }

        enum CodingKeys: String, CodingKey {
            case on, k, n, off
            case clearAfter = "clear_after"
        }

        func validate() throws {
            guard n >= 1, n <= 64, k >= 1, k <= n, clearAfter >= 1, clearAfter <= 1_000_000,
                on.isFinite, off.isFinite, off <= on
            else {
                throw RiskModelError("alarm: need 1 ≤ k ≤ n ≤ 64, clear_after ≥ 1, off ≤ on")
            }
        }
    }

    /// Failure within this many steps is what `risk` is the probability of.
    public var horizon: Int
    /// Smoothing rate of the stream trends (exponential moving average, 0 < rate ≤ 1).
    public var trendRate: Double
    /// For requests without a stream: features of the observation alone.
    public var stateless: Logistic
    /// For requests with a stream: may also use the stream's trends.
    public var stream: Logistic
    public var alarm: AlarmRule

    public init(horizon: Int, trendRate: Double, stateless: Logistic, stream: Logistic, alarm: AlarmRule) {
        self.horizon = horizon
        self.trendRate = trendRate
        self.stateless = stateless
        self.stream = stream
        self.alarm = alarm
    }

    enum CodingKeys: String, CodingKey {
        case horizon, stateless, stream, alarm
        case trendRate = "trend_rate"
    }

    public func validate() throws {
        guard horizon >= 1 else { throw RiskModelError("horizon must be >= 1") }
        guard trendRate > 0, trendRate <= 1 else { throw RiskModelError("trend_rate must be in (0, 1]") }
        try stateless.validate("stateless")
        try stream.validate("stream")
        for f in stateless.features where Features.streamOnly.contains(f) {
            throw RiskModelError("stateless: feature '\(f)' needs a stream")
        }
        try alarm.validate()
    }

    /// The `risk` section of `manifest.json` in `directory`, or `nil` when the manifest has none.
    public static func load(directory: String) throws -> RiskModel? {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("manifest.json")
        let data = try Data(contentsOf: url)
        struct Section: Decodable { var risk: RiskModel? }
        let section: Section
        do {
            section = try JSONDecoder().decode(Section.self, from: data)
        } catch {
            throw RiskModelError("\(url.path): the 'risk' section is malformed: \(error)")
        }
        guard let risk = section.risk else { return nil }
        do {
            try risk.validate()
        } catch let e as RiskModelError {
            throw RiskModelError("\(url.path): risk: \(e.message)")
        }
        return risk
    }

    /// Per-stream state the risk and the alarm rule need: trends and the recent risks. A few dozen
    /// bytes; the server keeps at most `max_streams` of them.
    public struct StreamState: Sendable, Equatable {
        /// Observations seen on this stream.
        public var steps = 0
        var qAverage = 0.0
        var energyAverage = 0.0
        var qPrevious = 0.0
        /// Bit i: risk ≥ `on` i steps ago (bit 0: the latest).
        var above: UInt64 = 0
        /// Consecutive latest risks < `off`.
        var calm = 0
        /// Whether the alarm is raised.
        public var alarm = false

        public init() {}
    }

    /// What one observation changed in its stream.
    public enum Transition: Sendable, Equatable {
        case none
        case raised(reason: String)
        case cleared(reason: String)
    }

    /// The features of one observation.
    struct Features {
        static let names: Set<String> = ["q", "energy", "q_drop", "q_delta", "energy_trend"]
        static let streamOnly: Set<String> = ["q_drop", "q_delta", "energy_trend"]
        var q: Double
        var energy: Double
        var qDrop = 0.0
        var qDelta = 0.0
        var energyTrend = 0.0

        func value(_ name: String) -> Double {
            switch name {
            case "q": return q
            case "energy": return energy
            case "q_drop": return qDrop
            case "q_delta": return qDelta
            case "energy_trend": return energyTrend
            default: return 0
            }
        }
    }

    static func energy(_ energy: Float, fallback: Double) -> Double {
        // An unchecked action (energy NaN) counts as a typical one: its feature sits at the mean.
        energy.isFinite ? Double(energy) : fallback
    }

    /// Risk of one observation without a stream.
    public func risk(q: Float, energy: Float) -> Float {
        let i = stateless.features.firstIndex(of: "energy")
        let f = Features(q: Double(q), energy: Self.energy(energy, fallback: i.map { stateless.mean[$0] } ?? 0))
        return stateless.probability(f)
    }

    /// Risk of one observation of a stream, and the stream's alarm after it; updates `state`.
    public func step(_ state: inout StreamState, q: Float, energy: Float) -> (risk: Float, transition: Transition) {
        let i = stream.features.firstIndex(of: "energy")
        let e = Self.energy(energy, fallback: i.map { stream.mean[$0] } ?? 0)
        let qd = Double(q)
        var f = Features(q: qd, energy: e)
        if state.steps > 0 {
            f.qDrop = state.qAverage - qd
            f.qDelta = state.qPrevious - qd
            f.energyTrend = e - state.energyAverage
            state.qAverage += trendRate * (qd - state.qAverage)
            state.energyAverage += trendRate * (e - state.energyAverage)
        } else {
            state.qAverage = qd
            state.energyAverage = e
        }
        state.qPrevious = qd
        state.steps += 1
        let risk = stream.probability(f)
        let isAbove = Double(risk) >= alarm.on
        let mask: UInt64 = alarm.n == 64 ? ~0 : (1 << UInt64(alarm.n)) - 1
        state.above = ((state.above << 1) | (isAbove ? 1 : 0)) & mask
        state.calm = Double(risk) < alarm.off ? state.calm + 1 : 0
        if !state.alarm {
            let count = state.above.nonzeroBitCount
            if count >= alarm.k {
                state.alarm = true
                state.calm = 0
                let r = String(format: "%.3f", risk), on = String(format: "%.3f", alarm.on)
                return (risk, .raised(reason: "risk \(r): \(count) of the last \(alarm.n) steps at or above \(on)"))
            }
        } else if state.calm >= alarm.clearAfter {
            state.alarm = false
            state.above = 0
            let off = String(format: "%.3f", alarm.off)
            return (risk, .cleared(reason: "risk below \(off) for \(alarm.clearAfter) steps"))
        }
        return (risk, .none)
    }
}

/// A malformed `risk` section.
public struct RiskModelError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
