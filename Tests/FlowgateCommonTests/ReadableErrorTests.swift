import FlowgateCommon
import Foundation
import Testing

struct ReadableErrorTests {
    struct Config: Decodable {
        struct Inner: Decodable { var width: Int }
        var batchSize: Int
        var layers: [Inner]
    }

    func message(_ json: String) -> String {
        do {
            _ = try JSONDecoder().decode(Config.self, from: Data(json.utf8))
            return "decoded"
        } catch {
            return readableError(error)
        }
    }

    @Test("a decoding error names the path of the bad key and what was wrong, without Foundation's dump")
    func decodingErrorsNameThePath() {
        let mismatch = message(#"{"batchSize": "x", "layers": []}"#)
        #expect(mismatch.hasPrefix("batchSize: Expected to decode Int but found a string"), "\(mismatch)")
        let nested = message(#"{"batchSize": 1, "layers": [{"width": 2}, {"width": true}]}"#)
        #expect(nested.hasPrefix("layers[1].width: "), "\(nested)")
        #expect(message(#"{"layers": []}"#) == "missing key 'batchSize'")
        for m in [mismatch, nested] { #expect(!m.contains("DecodingError"), "\(m)") }
    }

    @Test("other errors print as they describe themselves")
    func otherErrors() {
        struct Plain: Error, CustomStringConvertible { var description: String { "plain words" } }
        #expect(readableError(Plain()) == "plain words")
    }
}
