// Cost of the failure-risk signal per observation (issue 14: it must stay under 10 % of the check).
// Build and run from the repository root (release optimisation, the two server files only):
//   swiftc -O -o /tmp/risk-bench Sources/FlowgateServer/RiskModel.swift Sources/FlowgateServer/StreamTable.swift scripts/risk_bench.swift && /tmp/risk-bench
import Foundation
let model = try! RiskModel.load(directory: "models/hopper-medium")!
let table = StreamTable(capacity: 4096, ttlSeconds: 300)
var qs = (0..<1000).map { _ in Float.random(in: 60...90) }, es = (0..<1000).map { _ in Float.random(in: -8 ... -4) }
var sink: Float = 0
let n = 2_000_000
var t0 = DispatchTime.now().uptimeNanoseconds
for i in 0..<n { sink += model.risk(q: qs[i % 1000], energy: es[i % 1000]) }
var t1 = DispatchTime.now().uptimeNanoseconds
print("stateless risk: \(Double(t1 - t0) / Double(n)) ns per observation")
let keys = (0..<100).map { StreamTable.Key(model: "hopper-medium", stream: "robot-\($0)-episode-0000") }
t0 = DispatchTime.now().uptimeNanoseconds
for i in 0..<n { sink += table.step(keys[i % 100], model: model, q: qs[i % 1000], energy: es[i % 1000], now: Double(i) * 1e-6).risk }
t1 = DispatchTime.now().uptimeNanoseconds
print("stream step (lock, lookup, trends, risk, rule): \(Double(t1 - t0) / Double(n)) ns per observation")
print(sink > 0 ? "" : " ")
