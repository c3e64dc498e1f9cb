// FlowgateServer: the inference server of protocol v1 (docs/protocol.md).
//
// - `InferenceServer`: public facade; `start()`, `shutdown()` (drains), `wait()`.
// - `ServableModel` / `ModelWorker`: what a model must provide (ServableModel.swift).
// - Socket thread (`SocketLoop`): the only code that touches the ROUTER and PUB sockets.
// - `BatchQueue`: bounded queue that groups compatible requests into batches; workers take batches
//   when idle, so a batch closes when it is full, when `maxDelayMicroseconds` have passed since its
//   first request, or (under load) when a worker frees up — whichever is later of the last two.
// - `WorkerThread`: runs forward passes and encodes replies; hands them back through
//   `CompletionQueue` plus an inproc PUSH → PULL wakeup.
