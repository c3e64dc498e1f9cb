import FlowgateTestSupport
import FlowgateCore
import Testing

@testable import FlowgateAlgorithms

@Suite("MC-ETM sampler")
struct EnergySamplerTests {
    static func smallSpec(spherical: Bool, activation: Activation) -> EnergyModelSpec {
        EnergyModelSpec(
            obsDim: 4, actDim: 2, latentDim: 3, encoderHidden: [8], decoderHidden: [9],
            autoencoderActivation: .silu, energyHidden: [10, 10], energyActivation: activation,
            target: .delta, sphericalLatent: spherical, deltaScale: [0.5, 1, 2, 1])
    }

    // Central differences (ε = 1e-2) in Float32 through decoder + energy: the smooth (SiLU)
    // networks agree to ~1e-3 relative error; ReLU can cross a kink, so it gets 2e-2.
    @Test("latent Langevin drift matches finite differences of E(s, a, dec(z))", arguments: [Activation.silu, .relu])
    func latentGradient(_ activation: Activation) {
        var rng = RNG(seed: 3)
        let model = EnergyTransitionModel(spec: Self.smallSpec(spherical: false, activation: activation), rng: &rng)
        let sampler = EnergySampler(model: model)
        let batch = 2, per = 3, l = 3
        let s = randomArray(batch * 4, seed: 1), a = randomArray(batch * 2, seed: 2)
        var z = randomArray(batch * per * l, seed: 4)
        func total(_ zz: [Float]) -> Double {
            s.withUnsafeBufferPointer { sp in
                a.withUnsafeBufferPointer { ap in
                    zz.withUnsafeBufferPointer { zp in
                        let r = sampler.latentEnergyGradient(
                            observations: sp.baseAddress!, actions: ap.baseAddress!, batch: batch, samplesPerRow: per,
                            latents: zp.baseAddress!)
                        return (0..<(batch * per)).reduce(0.0) { $0 + Double(r.energies[$1]) }
                    }
                }
            }
        }
        let analytic: [Float] = s.withUnsafeBufferPointer { sp in
            a.withUnsafeBufferPointer { ap in
                z.withUnsafeBufferPointer { zp in
                    let r = sampler.latentEnergyGradient(
                        observations: sp.baseAddress!, actions: ap.baseAddress!, batch: batch, samplesPerRow: per,
                        latents: zp.baseAddress!)
                    return Array(UnsafeBufferPointer(start: r.gradient, count: batch * per * l))
                }
            }
        }
        let err = relativeGradientError(values: &z, analytic: analytic, epsilon: 1e-2, loss: total)
        #expect(err < (activation == .silu ? 2e-3 : 2e-2), "relative error \(err)")
    }

    @Test("bank proposals: each row starts from its lowest-energy bank latents, in order")
    func bankProposals() {
        var rng = RNG(seed: 8)
        let model = EnergyTransitionModel(spec: Self.smallSpec(spherical: true, activation: .relu), rng: &rng)
        let bankCount = 6, l = 3, batch = 2, per = 2
        model.latentBank = randomArray(bankCount * l, seed: 9)
        #expect(!EnergySampler(model: EnergyTransitionModel(spec: model.spec, rng: &rng)).hasLatentBank)
        let sampler = EnergySampler(model: model)
        #expect(sampler.hasLatentBank)
        let s = randomArray(batch * 4, seed: 10), a = randomArray(batch * 2, seed: 11)
        // Energy of every bank latent under each row's (s, a).
        let energies: [Float] = s.withUnsafeBufferPointer { sp in
            a.withUnsafeBufferPointer { ap in
                let all = (0..<batch).flatMap { _ in model.latentBank }
                return all.withUnsafeBufferPointer { zp in
                    let r = sampler.latentEnergyGradient(
                        observations: sp.baseAddress!, actions: ap.baseAddress!, batch: batch, samplesPerRow: bankCount,
                        latents: zp.baseAddress!)
                    return Array(UnsafeBufferPointer(start: r.energies, count: batch * bankCount))
                }
            }
        }
        var z = [Float](repeating: 0, count: batch * per * l)
        var rngs = [RNG(seed: 1), RNG(seed: 2)]
        s.withUnsafeBufferPointer { sp in
            a.withUnsafeBufferPointer { ap in
                rngs.withUnsafeMutableBufferPointer { rp in
                    z.withUnsafeMutableBufferPointer { zp in
                        sampler.proposeLatents(
                            observations: sp.baseAddress!, actions: ap.baseAddress!, batch: batch, samplesPerRow: per,
                            proposals: bankCount, rngs: rp.baseAddress!, into: zp.baseAddress!)
                    }
                }
            }
        }
        for b in 0..<batch {
            let order = (0..<bankCount).sorted { energies[b * bankCount + $0] < energies[b * bankCount + $1] }
            #expect(energies[b * bankCount + order[0]] < energies[b * bankCount + order[bankCount - 1]])
            for k in 0..<per {
                let want = Array(model.latentBank[(order[k] * l)..<(order[k] * l + l)])
                #expect(Array(z[((b * per + k) * l)..<((b * per + k) * l + l)]) == want, "row \(b) sample \(k)")
            }
        }
    }

    @Test("no Langevin step: E_min is the lowest proposal energy, the next state its decoded latent, the cost P energy passes")
    func proposalsOnly() {
        var rng = RNG(seed: 12)
        let model = EnergyTransitionModel(spec: Self.smallSpec(spherical: true, activation: .relu), rng: &rng)
        let bankCount = 7, l = 3, d = 4, batch = 3
        model.latentBank = randomArray(bankCount * l, seed: 13)
        let schedule = LangevinSchedule(steps: 0, initialStepSize: 0.1, noise: 0.01)
        // P = bank size: every row scores the whole bank, so the answer is known without the RNG.
        let config = EnergySamplingConfig(samples: 2, schedule: schedule, proposals: bankCount)
        let sampler = EnergySampler(model: model, config: config, frozenEnergy: true)
        let s = randomArray(batch * d, seed: 14), a = randomArray(batch * 2, seed: 15)
        let r = sampler.evaluate(observations: s, actions: a, seeds: [1, 2, 3])
        // The precomputed first layer (frozen weights) and full energy passes agree.
        let full = EnergySampler(model: model, config: config).evaluate(observations: s, actions: a, seeds: [1, 2, 3])
        for b in 0..<batch { #expect(abs(full.eMin[b] - r.eMin[b]) <= 1e-5 * max(1, abs(r.eMin[b])), "row \(b)") }
        let decoded = model.decoder.replica().forward(model.latentBank, batch: bankCount)
        func nextState(_ b: Int, _ j: Int) -> [Float] {
            var out = [Float](repeating: 0, count: d)
            s.withUnsafeBufferPointer { sp in
                decoded.withUnsafeBufferPointer { xp in
                    out.withUnsafeMutableBufferPointer {
                        model.spec.fromManifold(observations: sp.baseAddress! + b * d, manifold: xp.baseAddress! + j * d, rows: 1, into: $0.baseAddress!)
                    }
                }
            }
            return out
        }
        for b in 0..<batch {
            let all = (0..<bankCount).map { j in
                model.energies(
                    observations: Array(s[(b * d)..<(b * d + d)]), actions: Array(a[(b * 2)..<(b * 2 + 2)]),
                    nextObservations: nextState(b, j), rows: 1)[0]
            }
            let best = all.indices.min { all[$0] < all[$1] }!
            #expect(abs(r.eMin[b] - all[best]) <= 1e-5 * max(1, abs(all[best])), "row \(b)")
            let next = nextState(b, best)
            for j in 0..<d { #expect(abs(r.predictedNext[b * d + j] - next[j]) <= 1e-5, "row \(b) dim \(j)") }
        }
        // The cost is the proposals' energy passes after the first layer (whose manifold columns
        // were applied to the bank once) plus one add each, and the (s, a) columns once per row:
        // no decoder pass, no final rescoring.
        let h1 = 10.0, w = 10.0, sa = 6.0  // energyHidden [10, 10]; input 4 + 2 + 4
        let perProposal = model.energy.forwardFlopsPerRow - 2 * w * h1 + h1
        let proposals = Double(bankCount) * perProposal + 2 * sa * h1
        #expect(sampler.flopsPerRow(samples: 2) == proposals)
        #expect(EnergySampler(model: model, config: config).flopsPerRow(samples: 2) == Double(bankCount) * model.energy.forwardFlopsPerRow)
        sampler.config.schedule.steps = 3
        let pass = model.energy.forwardFlopsPerRow + model.decoder.forwardFlopsPerRow
        #expect(sampler.flopsPerRow(samples: 2) == proposals + 2 * (3 * 3 + 1) * pass)
    }

    @Test("nearest-source proposals: E_min over the k entries whose source (s, a) is nearest, whatever the batch; the search is counted")
    func nearestProposals() {
        var rng = RNG(seed: 31)
        let model = EnergyTransitionModel(spec: Self.smallSpec(spherical: true, activation: .relu), rng: &rng)
        let bankCount = 40, l = 3, d = 4, k = 2, batch = 5, nearest = 6
        model.latentBank = randomArray(bankCount * l, seed: 32)
        model.bankSources = randomArray(bankCount * (d + k), seed: 33)
        let schedule = LangevinSchedule(steps: 0, initialStepSize: 0.1, noise: 0.01)
        let config = EnergySamplingConfig(samples: 1, schedule: schedule, proposals: nearest, nearest: true)
        let sampler = EnergySampler(model: model, config: config, frozenEnergy: true)
        #expect(sampler.usesNearestProposals)
        let s = randomArray(batch * d, seed: 34), a = randomArray(batch * k, seed: 35)
        let r = sampler.evaluate(observations: s, actions: a, seeds: [1, 2, 3, 4, 5])
        let decoded = model.decoder.replica().forward(model.latentBank, batch: bankCount)
        for b in 0..<batch {
            // Brute force: the `nearest` entries by squared distance of (s, a) to each source.
            let query = Array(s[(b * d)..<(b * d + d)]) + Array(a[(b * k)..<(b * k + k)])
            let distance = (0..<bankCount).map { j in
                (0..<(d + k)).reduce(Float(0)) { acc, c in
                    let e = query[c] - model.bankSources[j * (d + k) + c]
                    return acc + e * e
                }
            }
            let chosen = distance.indices.sorted { distance[$0] < distance[$1] }.prefix(nearest)
            let energies = chosen.map { j -> Float in
                var next = [Float](repeating: 0, count: d)
                s.withUnsafeBufferPointer { sp in
                    decoded.withUnsafeBufferPointer { xp in
                        next.withUnsafeMutableBufferPointer {
                            model.spec.fromManifold(
                                observations: sp.baseAddress! + b * d, manifold: xp.baseAddress! + j * d, rows: 1, into: $0.baseAddress!)
                        }
                    }
                }
                return model.energies(
                    observations: Array(s[(b * d)..<(b * d + d)]), actions: Array(a[(b * k)..<(b * k + k)]), nextObservations: next,
                    rows: 1)[0]
            }
            let best = energies.min()!
            #expect(abs(r.eMin[b] - best) <= 1e-5 * max(1, abs(best)), "row \(b): \(r.eMin[b]) vs \(best)")
            // Alone, with another seed: the same proposals (no random draw), so the same E_min.
            let alone = sampler.evaluate(
                observations: Array(s[(b * d)..<(b * d + d)]), actions: Array(a[(b * k)..<(b * k + k)]), seeds: [99])
            #expect(abs(alone.eMin[0] - r.eMin[b]) <= 1e-6 * max(1, abs(best)), "row \(b) alone")
        }
        // A random draw of the same size finds a lower E_min only by visiting other entries; what the
        // check costs: the proposals plus one multiply-add per source coordinate and entry.
        let random = EnergySampler(model: model, config: EnergySamplingConfig(samples: 1, schedule: schedule, proposals: nearest), frozenEnergy: true)
        #expect(!random.usesNearestProposals)
        #expect(sampler.flopsPerRow(samples: 1) == random.flopsPerRow(samples: 1) + 2 * Double((d + k) * bankCount))
        // Without sources the setting falls back to random draws.
        model.bankSources = []
        #expect(!EnergySampler(model: model, config: config, frozenEnergy: true).usesNearestProposals)
    }

    @Test("staged proposals: the flag of every proposal scored, rows below the exit stop at the first stage, the others score all")
    func stagedProposals() {
        var rng = RNG(seed: 31)
        let model = EnergyTransitionModel(spec: Self.smallSpec(spherical: true, activation: .relu), rng: &rng)
        let bankCount = 40, l = 3, d = 4, batch = 24
        model.latentBank = randomArray(bankCount * l, seed: 32)
        let schedule = LangevinSchedule(steps: 0, initialStepSize: 0.1, noise: 0.01)
        let full = EnergySampler(
            model: model, config: EnergySamplingConfig(samples: 1, schedule: schedule, proposals: 30), frozenEnergy: true)
        let first = EnergySampler(
            model: model, config: EnergySamplingConfig(samples: 1, schedule: schedule, proposals: 8), frozenEnergy: true)
        let staged = EnergySampler(
            model: model, config: EnergySamplingConfig(samples: 1, schedule: schedule, proposals: 30, firstProposals: 8),
            frozenEnergy: true)
        let s = randomArray(batch * d, seed: 33), a = randomArray(batch * 2, seed: 34)
        let seeds = (0..<batch).map { UInt64(500 + $0) }
        let eFull = full.evaluate(observations: s, actions: a, seeds: seeds).eMin
        let eFirst = first.evaluate(observations: s, actions: a, seeds: seeds).eMin
        // Without an exit energy staging is off: every proposal, every row.
        let unset = staged.evaluate(observations: s, actions: a, seeds: seeds).eMin
        #expect(unset == eFull)
        #expect(staged.proposalsScored == batch * 30)
        // Exit at the median of the first-stage energies: about half the rows stop there.
        let exit = eFirst.sorted()[batch / 2]
        staged.exitEnergy = exit
        let before = staged.proposalsScored
        let e = staged.evaluate(observations: s, actions: a, seeds: seeds).eMin
        var stopped = 0
        for b in 0..<batch {
            let tol = 1e-5 * max(1, abs(eFull[b]))
            if eFirst[b] <= exit {
                // The first P1 draws are the full check's first P1 draws.
                stopped += 1
                #expect(abs(e[b] - eFirst[b]) <= tol, "row \(b) stops at the first stage")
            } else {
                #expect(abs(e[b] - eFull[b]) <= tol, "row \(b) scores every proposal")
            }
            // The flag at the exit energy (or any threshold above it) is the full check's.
            #expect((e[b] <= exit) == (eFull[b] <= exit), "row \(b) flag")
            #expect(e[b] >= eFull[b] - tol)
        }
        #expect(stopped > 0 && stopped < batch)
        #expect(staged.proposalsScored - before == batch * 8 + (batch - stopped) * 22)
        // Shared between two samplers: the first stage is what they split; the rest is finished.
        #expect(staged.splitProposals == 8 && full.splitProposals == 30)
        let helper = EnergySampler(
            model: model, config: EnergySamplingConfig(samples: 1, schedule: schedule, proposals: 30, firstProposals: 8),
            frozenEnergy: true)
        helper.exitEnergy = exit
        let job = ProposalSplit()
        var shared = [Float](repeating: 0, count: batch)
        s.withUnsafeBufferPointer { sp in
            a.withUnsafeBufferPointer { ap in
                seeds.withUnsafeBufferPointer { sd in
                    staged.beginSplit(job, observations: sp.baseAddress!, actions: ap.baseAddress!, seeds: sd.baseAddress!, batch: batch)
                    helper.scoreSplit(job, proposals: 3..<8)
                    staged.scoreSplit(job, proposals: 0..<3)
                    shared.withUnsafeMutableBufferPointer { staged.finishSplit(job, eMin: $0.baseAddress!) }
                }
            }
        }
        for b in 0..<batch { #expect(abs(shared[b] - e[b]) <= 1e-5 * max(1, abs(e[b])), "row \(b) shared") }
        // Both stages shared: the rows still above the exit after the first stage have their other
        // 22 proposals scored in two ranges too, each proposal once, and `finishSplit` only selects.
        #expect(staged.splitStageProposals == [8, 22] && full.splitStageProposals == [30])
        let twoStages = ProposalSplit()
        var sharedTwice = [Float](repeating: 0, count: batch)
        let scoredBefore = staged.proposalsScored + helper.proposalsScored
        s.withUnsafeBufferPointer { sp in
            a.withUnsafeBufferPointer { ap in
                seeds.withUnsafeBufferPointer { sd in
                    staged.beginSplit(twoStages, observations: sp.baseAddress!, actions: ap.baseAddress!, seeds: sd.baseAddress!, batch: batch)
                    helper.scoreSplit(twoStages, stage: 0, proposals: 5..<8)
                    staged.scoreSplit(twoStages, stage: 0, proposals: 0..<5)
                    #expect(twoStages.secondStageRows == 0)
                    staged.endFirstStage(twoStages)
                    #expect(twoStages.secondStageRows == batch - stopped)
                    helper.scoreSplit(twoStages, stage: 1, proposals: 10..<22)
                    staged.scoreSplit(twoStages, stage: 1, proposals: 0..<10)
                    sharedTwice.withUnsafeMutableBufferPointer { staged.finishSplit(twoStages, eMin: $0.baseAddress!) }
                }
            }
        }
        for b in 0..<batch { #expect(abs(sharedTwice[b] - e[b]) <= 1e-5 * max(1, abs(e[b])), "row \(b) shared in two stages") }
        #expect(staged.proposalsScored + helper.proposalsScored - scoredBefore == batch * 8 + (batch - stopped) * 22)
        // With Langevin steps there is nothing to stop early: staging is off.
        staged.config.schedule.steps = 2
        #expect(staged.splitProposals == 30)
        _ = l
    }

    @Test("a row's samples depend on its seed only, not on the rest of the batch")
    func batchIndependence() {
        var rng = RNG(seed: 5)
        let model = EnergyTransitionModel(spec: Self.smallSpec(spherical: true, activation: .relu), rng: &rng)
        let sampler = EnergySampler(model: model, config: EnergySamplingConfig(samples: 5, schedule: LangevinSchedule(steps: 6, initialStepSize: 0.1, finalStepSize: 0.02, noise: 0.01)))
        let s = randomArray(3 * 4, seed: 6), a = randomArray(3 * 2, seed: 7)
        let all = sampler.evaluate(observations: s, actions: a, seeds: [11, 22, 33])
        let alone = sampler.evaluate(observations: Array(s[4..<8]), actions: Array(a[2..<4]), seeds: [22])
        let again = sampler.evaluate(observations: s, actions: a, seeds: [11, 22, 33])
        #expect(all == again)
        #expect(abs(all.eMin[1] - alone.eMin[0]) <= 1e-5 * max(1, abs(alone.eMin[0])))
        for j in 0..<4 { #expect(abs(all.predictedNext[4 + j] - alone.predictedNext[j]) <= 1e-4) }
        #expect(abs(all.spread[1] - alone.spread[0]) <= 1e-4)
        // E_min is the minimum over samples, so a different seed gives a different (finite) value.
        let other = sampler.evaluate(observations: Array(s[4..<8]), actions: Array(a[2..<4]), seeds: [23])
        #expect(other.eMin[0].isFinite && other.eMin[0] != alone.eMin[0])
        #expect(all.spread.allSatisfy { $0 > 0 })
    }

    @Test("manifold coordinates round-trip for deltas and next states")
    func manifoldRoundTrip() {
        for target in [EnergyModelSpec.ManifoldTarget.delta, .nextState] {
            var spec = Self.smallSpec(spherical: true, activation: .relu)
            spec.target = target
            let s = randomArray(8, seed: 1), sn = randomArray(8, seed: 2)
            var x = [Float](repeating: 0, count: 8), back = x
            spec.toManifold(observations: s, nextObservations: sn, rows: 2, into: &x)
            spec.fromManifold(observations: s, manifold: x, rows: 2, into: &back)
            for i in 0..<8 { #expect(abs(back[i] - sn[i]) <= 1e-5) }
            if target == .delta { #expect(abs(x[2] - (sn[2] - s[2]) / 2) <= 1e-6) }
        }
    }

    @Test("model round-trips through named tensors")
    func namedTensors() throws {
        var rng = RNG(seed: 9)
        let spec = Self.smallSpec(spherical: true, activation: .relu)
        let model = EnergyTransitionModel(spec: spec, rng: &rng)
        let tensors = model.namedTensors()
        #expect(tensors.keys.contains("enc.0.weight") && tensors.keys.contains("dec.1.bias") && tensors.keys.contains("energy.2.weight"))
        let loaded = try EnergyTransitionModel(spec: spec, tensors: tensors)
        let s = randomArray(8, seed: 1), a = randomArray(4, seed: 2), sn = randomArray(8, seed: 3)
        #expect(
            model.energies(observations: s, actions: a, nextObservations: sn, rows: 2)
                == loaded.energies(observations: s, actions: a, nextObservations: sn, rows: 2))
        var missing = tensors
        missing["energy.0.bias"] = nil
        #expect(throws: ParameterLoadError.self) { try EnergyTransitionModel(spec: spec, tensors: missing) }
    }
}
