import FlowgateAlgorithms
import FlowgateClient
import FlowgateCore
import FlowgateModelFormat
import FlowgateProtocol
@testable import FlowgateServer
import Foundation
import Testing

/// One observation (and batches too small for row shares) on both cores: the M candidates, then the
/// check's bank proposals, cut in two halves that two workers compute (issue 12).
@Suite struct SplitObservationTests {
    let policy: PolicyServable
    let description: ModelDescription

    init() throws {
        policy = try PolicyServable(directory: ShippedModel.directory)
        description = policy.modelDescription
    }

    func observations(_ count: Int, seed: UInt64 = 21) -> [Float] {
        var rng = RNG(seed: seed)
        return (0..<(count * description.observationDim)).map { _ in rng.normal() }
    }

    var defaults: ActOptions {
        ActOptions(
            steps: description.defaults.steps, candidates: description.defaults.candidates,
            samples: max(description.defaults.samples, 1), check: true)
    }

    /// Runs a shared computation with `taker` beginning and joining it; `helperFor(phase)` is the
    /// worker that computes half 1 of that phase (the taker itself for the take-back path). Phases
    /// the taker says have no work are skipped, as the server does; `ran` gets the phases computed.
    func shared(
        taker: any SplittableWorker, helperFor: (Int) -> any SplittableWorker, observations: [Float], count: Int,
        seeds: [UInt64], options: ActOptions, ran: UnsafeMutablePointer<[Int]>? = nil
    ) throws -> ActResult {
        let phases = taker.splitPhases(count: count, options: options)
        #expect(phases > 0)
        let job = taker.beginSplit(observations: observations, count: count, seeds: seeds, options: options)
        ran?.pointee = []
        for phase in 0..<phases where taker.needsPhase(phase, of: job) {
            // The helper's half first, so that its writes must survive the taker's own half.
            try helperFor(phase).computeHalf(1, phase: phase, of: job)
            try taker.computeHalf(0, phase: phase, of: job)
            try taker.join(phase: phase, of: job)
            ran?.pointee.append(phase)
        }
        return try taker.finishSplit(job)
    }

    func expectSame(_ a: ActResult, _ b: ActResult, _ what: String) {
        #expect(a.actions.count == b.actions.count, "\(what): action count")
        for (x, y) in zip(a.actions, b.actions) { #expect(abs(x - y) <= 1e-5, "\(what): action \(x) vs \(y)") }
        #expect(a.q.count == b.q.count && a.energy.count == b.energy.count, "\(what): row count")
        for (x, y) in zip(a.q, b.q) { #expect(abs(x - y) <= 1e-4 * max(1, abs(y)), "\(what): q \(x) vs \(y)") }
        for (x, y) in zip(a.energy, b.energy) {
            #expect(x.isNaN == y.isNaN && (x.isNaN || abs(x - y) <= 1e-4 * max(1, abs(y))), "\(what): E_min \(x) vs \(y)")
        }
        #expect(a.reliable == b.reliable, "\(what): reliable")
    }

    /// The shipped model with its check re-cut as staged random proposals (the first 128 of 384,
    /// hopper-medium's setting until 2026-12-03, with the threshold calibrated for it then), so that
    /// the staged check's phases are tested whatever the shipped model uses.
    static func stagedVariant() throws -> PolicyServable {
        var files = try ModelDirectory.load(atPath: ShippedModel.directory)
        var energy = try #require(files.manifest.networks[EnergyModelSpec.role])
        energy.options?["nearestProposals"] = nil
        energy.options?["proposals"] = 384
        energy.options?["firstProposals"] = 128
        files.manifest.networks[EnergyModelSpec.role] = energy
        files.manifest.reliability?.threshold = -4.425963
        return PolicyServable(bundle: try PolicyBundle(model: files, checkerFactory: EnergyTransitionModel.checkerFactory))
    }

    /// The shipped check (16 nearest-source proposals: one proposal phase) and the staged one (two).
    @Test(arguments: [false, true]) func halvesOnTwoWorkersGiveTheUnsharedActionsQAndEnergy(staged: Bool) throws {
        let policy = staged ? try Self.stagedVariant() : self.policy
        let taker = try #require(policy.makeWorker(rowsPerPass: 256) as? any SplittableWorker)
        let helper = try #require(policy.makeWorker(rowsPerPass: 256) as? any SplittableWorker)
        let reference = policy.makeWorker(rowsPerPass: 256)
        // One observation at the defaults, a small batch, more samples, the check off, and an odd M
        // (halves of 5 and 4 candidates, of 80 and 80 proposals).
        var options5 = defaults
        options5.candidates = 9
        options5.samples = 3
        var unchecked = defaults
        unchecked.check = false
        for (count, options) in [(1, defaults), (5, defaults), (3, options5), (2, unchecked)] {
            let obs = observations(count, seed: UInt64(count))
            let seeds = (0..<count).map { 900 &+ UInt64($0) }
            let whole = try reference.act(observations: obs, count: count, seeds: seeds, options: options)
            let split = try shared(
                taker: taker, helperFor: { _ in helper }, observations: obs, count: count, seeds: seeds, options: options)
            expectSame(split, whole, "count \(count), M \(options.candidates), check \(options.check)")
            // Candidates, then the check's proposals: one phase, or one per stage when staged.
            #expect(taker.splitPhases(count: count, options: options) == (options.check ? (staged ? 3 : 2) : 1))
            // Taken back: the taker computes both halves itself, same result.
            let alone = try shared(
                taker: taker, helperFor: { _ in taker }, observations: obs, count: count, seeds: seeds, options: options)
            expectSame(alone, whole, "taken back, count \(count)")
        }
        // An observation off the data (random): with the staged check, the first stage stays above the
        // exit, so the second stage is shared too; every phase ran.
        var ran: [Int] = []
        let offData = observations(1, seed: 3)
        let wholeOff = try reference.act(observations: offData, count: 1, seeds: [8], options: defaults)
        #expect(wholeOff.reliable == [false])
        let splitOff = try shared(
            taker: taker, helperFor: { _ in helper }, observations: offData, count: 1, seeds: [8], options: defaults, ran: &ran)
        expectSame(splitOff, wholeOff, "off the data")
        #expect(ran == (staged ? [0, 1, 2] : [0, 1]))
        // An observation on the data (row 500 of data/hopper-medium.npz, mid-stride): its first stage
        // already falls below the threshold, so the taker says the second stage has no work and it is
        // skipped; the reply is still the unshared one.
        let onData: [Float] = [
            -0.25684830, 0, 1, 0.48310244, 0, -0.27740255, 0, -0.33455613, 1.00010121, -0.00079247035, -0.10578068,
            -0.77986497, 0.94394052, -0.27760899, 1,
        ]
        let wholeOn = try reference.act(observations: onData, count: 1, seeds: [8], options: defaults)
        #expect(wholeOn.reliable == [true])
        let splitOn = try shared(
            taker: taker, helperFor: { _ in helper }, observations: onData, count: 1, seeds: [8], options: defaults, ran: &ran)
        expectSame(splitOn, wholeOn, "on the data")
        #expect(ran == [0, 1], "staged: the second stage skipped")
        // The draws per candidate do not depend on the split: different seeds give another action,
        // the same seeds the same one whichever worker computes which half.
        let obs = observations(1)
        let a = try shared(taker: helper, helperFor: { _ in taker }, observations: obs, count: 1, seeds: [5], options: defaults)
        let b = try reference.act(observations: obs, count: 1, seeds: [5], options: defaults)
        expectSame(a, b, "roles swapped")
        let c = try reference.act(observations: obs, count: 1, seeds: [6], options: defaults)
        #expect(a.actions != c.actions, "another seed draws other candidates")
    }

    @Test func oneCandidateOrAHalfLargerThanAPassIsNotShared() throws {
        let worker = try #require(policy.makeWorker(rowsPerPass: 16) as? any SplittableWorker)
        var one = defaults
        one.candidates = 1
        #expect(worker.splitPhases(count: 1, options: one) == 0)
        // 16-row passes: 2 observations × 8 candidates per half fit, 3 do not.
        var m16 = defaults
        m16.candidates = 16
        #expect(worker.splitPhases(count: 2, options: m16) == 2)
        #expect(worker.splitPhases(count: 3, options: m16) == 0)
    }

    @Test func theSplitPlanIsPureAndNeverSplitsUnderLoad() {
        // One observation, the other worker idle, nothing waiting: halves.
        #expect(BatchPolicy.plan(count: 1, idleWorkers: 1, pendingRequests: 0, canHalve: true) == .halves)
        #expect(BatchPolicy.plan(count: 7, idleWorkers: 1, pendingRequests: 0, canHalve: true) == .halves)
        // Enough observations for two row shares: rows, as before.
        #expect(BatchPolicy.plan(count: 8, idleWorkers: 1, pendingRequests: 0, canHalve: true) == .rows([0..<4, 4..<8]))
        // Under load (a request waits) or the other worker busy: whole, one core per batch.
        #expect(BatchPolicy.plan(count: 1, idleWorkers: 1, pendingRequests: 1, canHalve: true) == .whole)
        #expect(BatchPolicy.plan(count: 1, idleWorkers: 0, pendingRequests: 0, canHalve: true) == .whole)
        #expect(BatchPolicy.plan(count: 8, idleWorkers: 1, pendingRequests: 2, canHalve: true) == .whole)
        // A model that cannot share one observation's work.
        #expect(BatchPolicy.plan(count: 1, idleWorkers: 1, pendingRequests: 0, canHalve: false) == .whole)
        #expect(BatchPolicy.plan(count: 0, idleWorkers: 1, pendingRequests: 0, canHalve: true) == .whole)
    }

    @Test func aHalfIsOfferedOnlyWithNothingWaitingAndCanBeTakenBack() throws {
        let loaded = LoadedModel(policy, serverMaxBatch: 8)
        let job = SelectionJob()
        let q = BatchQueue(limit: 10, maxDelayMicroseconds: 0)
        let part = SplitPart(model: loaded, job: job)
        // Nobody took it: the taker takes it back and it is never handed out.
        #expect(q.offer(half: part, of: job, phase: 0, model: loaded))
        #expect(q.reclaim(part), "a half nobody started is taken back")
        #expect(q.poll(now: 0) == nil, "a half taken back is not handed out")
        // Re-armed for the next phase and taken by another worker: not taken back; its result is waited for.
        #expect(q.offer(half: part, of: job, phase: 1, model: loaded))
        guard case .part(let taken) = q.poll(now: 0), case .half(_, let phase) = taken.share else {
            Issue.record("expected the half")
            return
        }
        #expect(taken === part && phase == 1)
        #expect(!q.reclaim(part), "a half another worker started cannot be taken back")
        q.finish(part, .success(.none))
        #expect(throws: Never.self) { try q.result(of: part).get() }
        // Under load (a request waits) nothing is offered: the taker computes both halves.
        var r = PendingRequest(
            envelope: [], id: .int(1), model: loaded,
            act: ActRequest(observations: FloatArray(rows: [observations(1)])), options: defaults, seedBase: 0,
            arrival: 0, deadline: nil)
        r.work = 1
        // A half offered before a request arrived is passed over for the request, then taken back.
        #expect(q.offer(half: part, of: job, phase: 0, model: loaded))
        #expect(q.enqueue(r) == nil)
        guard case .batch = q.poll(now: 0) else {
            Issue.record("expected the waiting batch before the half")
            return
        }
        #expect(q.reclaim(part), "the half nobody started is taken back")
        #expect(q.enqueue(r) == nil)
        #expect(!q.offer(half: part, of: job, phase: 0, model: loaded))
        guard case .batch = q.poll(now: 0) else {
            Issue.record("expected the waiting batch, not a half")
            return
        }
    }
}

/// Records which halves of shared computations each worker thread computed.
final class RecordingSplitModel: ServableModel, @unchecked Sendable {
    let inner: PolicyServable
    let lock = NSLock()
    /// (thread name, phase, half)
    var halves: [(String, Int, Int)] = []
    init(_ inner: PolicyServable) { self.inner = inner }
    var modelDescription: ModelDescription { inner.modelDescription }
    func flopsPerObservation(_ options: ActOptions) -> Double { inner.flopsPerObservation(options) }
    func makeWorker() -> any ModelWorker { makeWorker(rowsPerPass: 256) }
    func makeWorker(rowsPerPass: Int) -> any ModelWorker {
        Worker(self, inner.makeWorker(rowsPerPass: rowsPerPass) as! any SplittableWorker)
    }
    final class Worker: SplittableWorker {
        let owner: RecordingSplitModel
        let inner: any SplittableWorker
        init(_ owner: RecordingSplitModel, _ inner: any SplittableWorker) {
            self.owner = owner
            self.inner = inner
        }
        func act(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) throws -> ActResult {
            try inner.act(observations: observations, count: count, seeds: seeds, options: options)
        }
        func splitPhases(count: Int, options: ActOptions) -> Int { inner.splitPhases(count: count, options: options) }
        func beginSplit(observations: [Float], count: Int, seeds: [UInt64], options: ActOptions) -> any SplitJob {
            inner.beginSplit(observations: observations, count: count, seeds: seeds, options: options)
        }
        func computeHalf(_ half: Int, phase: Int, of job: any SplitJob) throws {
            let name = "\(pthread_self())"  // Thread.current.name is not the worker's name on Linux
            owner.lock.withLock { owner.halves.append((name, phase, half)) }
            try inner.computeHalf(half, phase: phase, of: job)
        }
        func join(phase: Int, of job: any SplitJob) throws { try inner.join(phase: phase, of: job) }
        func needsPhase(_ phase: Int, of job: any SplitJob) -> Bool { inner.needsPhase(phase, of: job) }
        func finishSplit(_ job: any SplitJob) throws -> ActResult { try inner.finishSplit(job) }
    }
}

@Suite struct SplitObservationServerTests {
    @Test func oneObservationOnAnIdleServerUsesBothWorkersAndGetsTheUnsharedReply() throws {
        let policy = try PolicyServable(directory: ShippedModel.directory)
        let model = RecordingSplitModel(policy)
        let d = policy.modelDescription
        var rng = RNG(seed: 5)
        let obs = (0..<d.observationDim).map { _ in rng.normal() }
        let seed: UInt64 = 77
        let options = ActOptions(steps: d.defaults.steps, candidates: d.defaults.candidates, samples: max(d.defaults.samples, 1), check: true)
        let whole = try policy.makeWorker().act(observations: obs, count: 1, seeds: [seed], options: options)
        // Shared when halves ran on two worker threads.
        let reply = try actOnIdleTwoWorkerServer(
            model, reset: { model.lock.withLock { model.halves = [] } },
            shared: { model.lock.withLock { Set(model.halves.map(\.0)) }.count == 2 }
        ) { try $0.act(observation: obs, parameters: ActParameters(seed: seed)) }
        let halves = model.lock.withLock { model.halves }
        #expect(Set(halves.map(\.0)).count == 2, "two worker threads computed halves: \(halves)")
        // The candidates and the check's proposals: both halves of both phases.
        #expect(whole.reliable == [false])
        #expect(Set(halves.map { [$0.1, $0.2] }) == [[0, 0], [0, 1], [1, 0], [1, 1]], "both halves of both phases")
        #expect(reply.timing.batch == 1)
        for (a, b) in zip(reply.actions.values, whole.actions) { #expect(abs(a - b) <= 1e-5, "action \(a) vs \(b)") }
        #expect(abs(reply.q[0] - whole.q[0]) <= 1e-4 * max(1, abs(whole.q[0])))
        #expect(abs(reply.energy[0] - whole.energy[0]) <= 1e-4 * max(1, abs(whole.energy[0])))
        #expect(reply.reliable == whole.reliable)
    }
}
