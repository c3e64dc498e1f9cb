// FlowgateProtocol: protocol v1 of the flowgate inference server (see docs/protocol.md).
//
// - `MessagePackValue`, `MessagePack.encode` / `MessagePack.decode`: the MessagePack codec. Decoding
//   runs `MessagePackGuard` first and then msgpack-c; encoding is a small pure-Swift packer.
// - `Request`, `ActRequest`, `ActReply`, `ErrorReply`, `InfoReply`, `HealthReply`: protocol messages.
// - `FloatArray`: observations/actions on the wire, as plain arrays or ndarray maps.

/// The protocol version reported by the `info` op.
public let flowgateProtocolVersion = 1
