// libFuzzer entry point for the request decoder the server runs on untrusted frames.
// Built by scripts/fuzz.sh with -sanitize=fuzzer,address; not part of the Swift package.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let frame = Array(UnsafeBufferPointer(start: data, count: size))
    let limits = ObservationLimits(maxObservations: 64, maxObservationDim: 17)
    if let request = try? Request.decode(frame, limits: limits) {
        // Whatever decodes must re-encode and decode to the same request.
        let again = try? Request.decode(request.encode(), limits: limits)
        if again != request { fatalError("round trip changed the request: \(request) vs \(String(describing: again))") }
        if let act = request.act {
            precondition(act.observations.values.count <= 64 * 17)
            precondition(act.observations.values.allSatisfy { $0.isFinite })
        }
    }
    // The general value decoder (msgpack-c behind MessagePackGuard) must not crash either.
    _ = try? MessagePack.decode(frame)
    return 0
}
