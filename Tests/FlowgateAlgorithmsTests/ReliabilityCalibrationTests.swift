import Foundation
import Testing

@testable import FlowgateAlgorithms

@Suite("reliability calibration")
struct ReliabilityCalibrationTests {
    @Test("threshold is the requested quantile and confidence is a monotone tail probability in [0, 1]")
    func monotone() {
        let values = (0..<1000).map { Float($0) / 10 }  // 0.0 … 99.9
        let cal = ReliabilityCalibration(heldOutEMin: values.shuffled(), quantile: 0.95, tableSize: 201)
        #expect(abs(cal.threshold - 94.905) < 1e-3)
        let reliableShare = Double(values.filter(cal.isReliable).count) / Double(values.count)
        #expect(abs(reliableShare - 0.95) <= 0.001)
        var last: Float = 1
        for e in stride(from: Float(-10), through: 110, by: 0.37) {
            let c = cal.confidence(e)
            #expect(c >= 0 && c <= 1)
            #expect(c <= last + 1e-6)
            last = c
        }
        #expect(cal.confidence(-1) == 1 && cal.confidence(1000) == 0)
        #expect(abs(cal.confidence(50) - 0.5) < 0.01)
        #expect(abs(cal.confidence(cal.threshold) - 0.05) < 0.01)
        #expect(cal.confidence(.nan) == 0 && cal.confidence(-.infinity) == 1)
    }

    @Test("calibration survives Codable round trips")
    func codable() throws {
        let cal = ReliabilityCalibration(heldOutEMin: [3, 1, 2, 5, 4], quantile: 0.9, tableSize: 11)
        #expect(cal.table.first == 1 && cal.table.last == 5 && cal.heldOutCount == 5)
        let data = try JSONEncoder().encode(cal)
        #expect(try JSONDecoder().decode(ReliabilityCalibration.self, from: data) == cal)
    }
}
