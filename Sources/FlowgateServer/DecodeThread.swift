import FlowgateProtocol
import FlowgateZMQ
import Foundation
import Logging

/// A request frame decoded off the socket thread.
struct DecodedFrame: Sendable {
    let envelope: [[UInt8]]
    let result: Result<Request, ProtocolError>
}

/// Decodes large request frames on its own thread, so that a 16 MiB body (whose decode is linear
/// but takes milliseconds) never delays the small requests behind it on the socket thread: health
/// checks and ordinary `act` requests keep their latency. Results go back to the socket thread
/// through `drain()` plus a message on the inproc wake-up socket, like worker completions.
///
/// Bounded: at most `maxPendingBytes` of frames wait; `submit` refuses more (the socket thread then
/// answers `overloaded`). All state is guarded by `condition`'s lock.
final class DecodeThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var inbox: [(envelope: [[UInt8]], body: [UInt8], limits: ObservationLimits)] = []
    private var outbox: [DecodedFrame] = []
    private var inboxBytes = 0
    private var busy = 0
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)
    private let context: ZMQContext
    private let wakeupEndpoint: String
    private let maxPendingBytes: Int
    private let logger: Logger

    init(context: ZMQContext, wakeupEndpoint: String, maxPendingBytes: Int, logger: Logger) {
        self.context = context
        self.wakeupEndpoint = wakeupEndpoint
        self.maxPendingBytes = maxPendingBytes
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "flowgate-decode"
        thread.start()
    }

    /// Queues a frame; false when `maxPendingBytes` would be exceeded (nothing queued then).
    func submit(envelope: [[UInt8]], body: [UInt8], limits: ObservationLimits) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped, inboxBytes == 0 || inboxBytes + body.count <= maxPendingBytes else { return false }
        inbox.append((envelope, body, limits))
        inboxBytes += body.count
        condition.signal()
        return true
    }

    /// Frames submitted and not yet drained (queued, being decoded, or decoded and waiting).
    var pending: Int {
        condition.lock()
        defer { condition.unlock() }
        return inbox.count + busy + outbox.count
    }

    /// Bytes of frames waiting to be decoded.
    var pendingBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return inboxBytes
    }

    /// Decoded frames, in submission order.
    func drain() -> [DecodedFrame] {
        condition.lock()
        defer { condition.unlock() }
        let out = outbox
        outbox.removeAll(keepingCapacity: true)
        return out
    }

    /// Stops the thread once the frames already submitted are decoded; waits for it.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
        finished.wait()
        finished.signal()
    }

    private func run() {
        defer { finished.signal() }
        let wake: ZMQSocket?
        do {
            let s = try ZMQSocket(context, .push)
            try s.setLinger(milliseconds: 0)
            try s.connect(wakeupEndpoint)
            wake = s
        } catch {
            logger.critical("decode thread cannot create its wakeup socket: \(error)")
            wake = nil
        }
        defer { wake?.close() }
        while true {
            condition.lock()
            while inbox.isEmpty && !stopped { condition.wait() }
            if inbox.isEmpty && stopped {
                condition.unlock()
                return
            }
            let item = inbox.removeFirst()
            inboxBytes -= item.body.count
            busy += 1
            condition.unlock()

            let result = Result { () throws(ProtocolError) in try Request.decode(item.body, limits: item.limits) }

            condition.lock()
            busy -= 1
            outbox.append(DecodedFrame(envelope: item.envelope, result: result))
            condition.unlock()
            do {
                try wake?.send([[]], dontWait: true)
            } catch {
                if !error.wouldBlock { logger.error("decode thread wakeup failed: \(error)") }
            }
        }
    }
}
