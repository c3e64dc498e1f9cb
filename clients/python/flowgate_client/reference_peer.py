"""A reference peer: flowgate's computation in PyTorch (CPU) behind pyzmq, speaking protocol v1.

    python -m flowgate_client.reference_peer --model models/hopper-medium \
        --bind tcp://127.0.0.1:5599 --threads 2

It loads a flowgate model directory (manifest.json + safetensors) and computes what
`flowgate serve` computes for `act`: K Euler flow steps for M candidates, the twin-min critic's
argmax, then the MC-ETM energy check (latent-bank proposals, N Langevin chains, E_min, calibrated
confidence). With ``--rng flowgate`` (default) every random number is drawn as flowgate draws it
(xoshiro256** seeded by SplitMix64, one stream per observation and candidate, same order), so the
same request with the same `seed` gets the same action, q and energy up to float32 rounding
(tests/test_reference_peer.py). ``--rng torch`` draws the same amounts from torch's generator
instead: what a PyTorch user would write, and cheaper, since replaying flowgate's draws runs a
64-bit generator step by step in numpy.

It batches whatever requests are queued when it wakes (same settings only, at most --max-batch
observations per batch). It answers `act`, `info` and `health`; other ops (`stats`) get
`unknown_op`; `deadline_ms`, work budgets and the queue bounds of flowgate are not implemented.
Only flow policies (kind `flow-velocity`) are supported.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import msgpack
import numpy as np
import torch
import torch.nn.functional as F
import zmq
from safetensors.numpy import load_file

from .risk import predict

U64 = np.uint64


# ---------------------------------------------------------------- flowgate's RNG, vectorised
class RNG:
    """xoshiro256** streams (one per element), seeded through SplitMix64 like FlowgateCore.RNG."""

    def __init__(self, seeds):
        x = np.array(seeds, dtype=U64).ravel()
        words = []
        for _ in range(4):
            x = x + U64(0x9E3779B97F4A7C15)
            z = (x ^ (x >> U64(30))) * U64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
            words.append(z ^ (z >> U64(31)))
        self.s = words

    def derived(self, index):
        """Per element, per index: RNG(seed: s0 ^ (index * C) ^ (s2 + index)); shape [n, len(index)]."""
        i = np.asarray(index, dtype=U64)[None, :]
        return RNG(self.s[0][:, None] ^ (i * U64(0xD1B54A32D192ED03)) ^ (self.s[2][:, None] + i))

    def next(self):
        s0, s1, s2, s3 = self.s
        r = s1 * U64(5)
        r = ((r << U64(7)) | (r >> U64(57))) * U64(9)
        t = s1 << U64(17)
        s2 = s2 ^ s0
        s3 = s3 ^ s1
        s1 = s1 ^ s2
        s0 = s0 ^ s3
        s2 = s2 ^ t
        s3 = (s3 << U64(45)) | (s3 >> U64(19))
        self.s = [s0, s1, s2, s3]
        return r

    def normal(self, count):
        """`count` N(0, 1) per stream, as `fillNormal`: Box–Muller pairs in double, then float32."""
        pairs = (count + 1) // 2
        u = np.empty((len(self.s[0]), 2 * pairs), dtype=U64)
        for k in range(2 * pairs):
            u[:, k] = self.next()
        u1 = ((u[:, 0::2] >> U64(11)).astype(np.float64) + 1.0) * (1.0 / 9007199254740992.0)
        u2 = (u[:, 1::2] >> U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
        r, th = np.sqrt(-2.0 * np.log(u1)), 2.0 * math.pi * u2
        out = np.empty((len(self.s[0]), 2 * pairs), dtype=np.float32)
        out[:, 0::2], out[:, 1::2] = r * np.cos(th), r * np.sin(th)
        return out[:, :count]

    def int_below(self, bound):
        """Lemire: the high 64 bits of next() * bound (bound < 2^32)."""
        x, b = self.next(), U64(bound)
        return ((x >> U64(32)) * b + (((x & U64(0xFFFFFFFF)) * b) >> U64(32))) >> U64(32)


class TorchDraws:
    """The same amounts of randomness from torch's generator (``--rng torch``)."""

    def __init__(self, seeds):
        self.g = torch.Generator().manual_seed(int(np.asarray(seeds).ravel()[0]) & 0x7FFFFFFFFFFFFFFF)
        self.n = len(np.asarray(seeds).ravel())

    def normal(self, count):
        return torch.randn(self.n, count, generator=self.g).numpy()

    def int_below(self, bound):
        return torch.randint(bound, (self.n,), generator=self.g).numpy()


# ---------------------------------------------------------------- networks
ACT = {"identity": lambda x: x, "relu": F.relu, "silu": F.silu, "tanh": torch.tanh}


class MLP:
    """FlowgateCore.MLP: Linear → (LayerNorm) → activation per hidden layer, Linear → output act."""

    def __init__(self, spec, prefix, t):
        n = len(spec["hiddenDims"]) + 1
        self.layers = [(t[f"{prefix}.{i}.weight"], t[f"{prefix}.{i}.bias"]) for i in range(n)]
        self.ln = [(t[f"{prefix}.ln{i}.weight"], t[f"{prefix}.ln{i}.bias"]) for i in range(n - 1)] if spec.get("layerNorm") else None
        self.act, self.out_act = ACT[spec["activation"]], ACT[spec.get("outputActivation", "identity")]

    def __call__(self, x):
        for i, (w, b) in enumerate(self.layers):
            x = F.linear(x, w, b)
            if i < len(self.layers) - 1:
                if self.ln:
                    x = F.layer_norm(x, x.shape[-1:], *self.ln[i], eps=1e-5)
                x = self.act(x)
        return self.out_act(x)


def load_tensors(path):
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in load_file(path).items()}


class Model:
    """One flowgate model directory, computed as flowgate's ActionSelector does."""

    def __init__(self, directory):
        m = json.load(open(os.path.join(directory, "manifest.json")))
        self.manifest, net = m, m["networks"]
        f32 = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
        self.mean, self.std = f32(m["normalization"]["observationMean"]), f32(m["normalization"]["observationStd"])
        self.low, self.high = f32(m["actionLow"]), f32(m["actionHigh"])
        self.od, self.ad = m["observationDim"], m["actionDim"]
        pol = net["policy"]
        if pol["kind"] != "flow-velocity":
            raise SystemExit(f"policy kind {pol['kind']!r}: only flow policies are implemented here")
        t = load_tensors(os.path.join(directory, pol["file"]))
        self.freq = t["time.frequencies"]
        self.time_net, self.velocity = MLP(pol["mlps"]["time"], "time", t), MLP(pol["mlps"]["velocity"], "velocity", t)
        self.critic = None
        if "critic" in net:
            t = load_tensors(os.path.join(directory, net["critic"]["file"]))
            self.critic = (MLP(net["critic"]["mlps"]["q1"], "q1", t), MLP(net["critic"]["mlps"]["q2"], "q2", t))
        self.energy = None
        if "energy" in net:
            e = net["energy"]
            t = load_tensors(os.path.join(directory, e["file"]))
            o = e.get("options", {})
            self.decoder, self.energy = MLP(e["mlps"]["dec"], "dec", t), MLP(e["mlps"]["energy"], "energy", t)
            self.bank = t.get("latent_bank")
            with torch.no_grad():
                self.decoded_bank = self.decoder(self.bank) if self.bank is not None else None
            self.latent = e["mlps"]["dec"]["inputDim"]
            self.spherical = o.get("spherical", 1) != 0
            self.proposals = int(o.get("proposals", 128))
            # Staged proposals: score the first `firstProposals` of a row's draws, stop when their
            # lowest energy is at or below the stage exit, else score the rest (flowgate's EnergySampler).
            self.first_proposals = int(o.get("firstProposals", 0))
            # Nearest-source proposals: a row's P bank entries are those whose source (s_z, a) is
            # nearest its own (flowgate's EnergySampler.nearestSources, the same float32 operations).
            src = t.get("bank_sources")
            self.nearest = int(o.get("nearestProposals", 0)) != 0 and src is not None and self.bank is not None
            if self.nearest:
                s32 = src.numpy().astype(np.float32)
                self.sources_t = np.ascontiguousarray(s32.T)  # [od + ad, count]
                norms = np.zeros(s32.shape[0], np.float32)
                for c in range(s32.shape[1]):
                    norms += s32[:, c] * s32[:, c]
                self.source_norms = norms
            self.langevin = int(o.get("langevinSteps", 30))
            self.eta0, self.eta1 = np.float32(o.get("stepSize", 0.1)), np.float32(o.get("finalStepSize", 0.01))
            self.noise = np.float32(o.get("noise", 0.01))
        rel = m.get("reliability")
        self.threshold = np.float32(rel["threshold"]) if rel else np.float32(np.inf)
        # Where staged rows stop: reliability.exitEnergy, never above the threshold; no calibration,
        # no staging (flowgate sets the exit only from a calibration).
        exit_energy = rel.get("exitEnergy") if rel else None
        self.stage_exit = (
            np.float32(min(np.float32(exit_energy), self.threshold)) if exit_energy is not None else self.threshold
        ) if rel else None
        # The optional failure-risk calibration (docs/reliability.md): requests without `stream` get
        # its stateless model, a logistic on the chosen action's q.
        self.risk = (m.get("risk") or {}).get("stateless")
        self.table = f32(rel["calibration"]) if rel else None
        if self.table is not None and len(self.table) < 2:
            self.table = np.repeat(self.table[:1] if len(self.table) else self.threshold, 2).astype(np.float32)

    # -- the computation
    def act(self, obs, seeds, steps, candidates, samples, check, rng=RNG):
        """obs [B, od] float32, seeds [B] uint64 → dict of numpy arrays."""
        b, od, ad = obs.shape[0], self.od, self.ad
        m = candidates if self.critic else 1
        obs_n = torch.from_numpy((obs - self.mean) / self.std)
        # Candidates: observation i, candidate j draws from RNG(seed_i).derived(j).
        noise = (RNG(seeds).derived(np.arange(m)) if rng is RNG else rng(seeds.repeat(m))).normal(ad)
        x = torch.from_numpy(noise).reshape(b * m, ad)
        rows = obs_n.repeat_interleave(m, dim=0)
        h = float(np.float32(1) / np.float32(steps))
        with torch.no_grad():
            for k in range(steps):
                tt = np.float32(k) * np.float32(h)
                a = np.float32(2 * np.float32(math.pi)) * tt * self.freq
                temb = self.time_net(torch.cat([torch.sin(a), torch.cos(a)])[None]).expand(b * m, -1)
                x = x + h * self.velocity(torch.cat([rows, x, temb], 1))
            x = x.clamp(-1, 1)
            if self.critic:
                inp = torch.cat([rows, x], 1)
                q = torch.minimum(self.critic[0](inp), self.critic[1](inp)).reshape(b, m)
                best = torch.argmax(q, 1)  # first of equal maxima, like flowgate's strict >
                q_best = q[torch.arange(b), best].numpy()
            else:
                best, q_best = torch.zeros(b, dtype=torch.long), np.full(b, np.nan, np.float32)
            chosen = x.reshape(b, m, ad)[torch.arange(b), best]
        energy = np.full(b, np.nan, np.float32)
        conf = np.zeros(b, np.float32)
        reliable = np.zeros(b, bool)
        if check and self.energy is not None:
            energy = self.e_min(obs_n, chosen, seeds, max(samples, 1), rng)
            conf = self.confidence(energy)
            reliable = energy <= self.threshold
        c = chosen.numpy()
        actions = np.clip(self.low + (c + np.float32(1)) * np.float32(0.5) * (self.high - self.low), self.low, self.high)
        return {"action": actions, "q": q_best, "energy": energy, "confidence": conf, "reliable": reliable}

    def e_min(self, obs_n, act, seeds, n, rng):
        b, l = obs_n.shape[0], self.latent
        if rng is RNG:  # flowgate: RNG(seed_i).derived(1 << 41).next() seeds the sampler's stream
            g = RNG(RNG(seeds).derived([1 << 41]).next())
        else:
            g = rng(seeds + U64(1 << 41))
        cond = torch.cat([obs_n, act], 1)
        bank = self.bank if self.bank is not None else torch.zeros(0, l)
        nb = bank.shape[0]
        with torch.no_grad():
            if self.proposals > 0 and nb > 0:
                p = max(min(self.proposals, nb), 1)
                if self.nearest:
                    idx = self.nearest_sources(cond.numpy(), p)
                elif p == nb:
                    idx = np.tile(np.arange(p), (b, 1))
                else:
                    idx = np.stack([g.int_below(nb) for _ in range(p)], 1)
                tidx = torch.from_numpy(idx.astype(np.int64))
                pz = bank[tidx]  # [b, p, l]
                # The decoder does not see (s, a): the bank is decoded once, at load.
                p1 = self.first_proposals
                if self.langevin == 0 and self.stage_exit is not None and 0 < p1 < p and n <= p1:
                    return self.staged_e_min(cond, tidx, p1)
                px = self.decoded_bank[tidx].reshape(b * p, -1)
                e = self.energy(torch.cat([cond.repeat_interleave(p, 0), px], 1))
                if self.langevin == 0:  # no Langevin step: E_min is the lowest proposal energy
                    return e.reshape(b, p).min(1).values.numpy()
                order = torch.argsort(e.reshape(b, p), dim=1, stable=True)[:, torch.arange(n) % p]
                z = torch.gather(pz, 1, order[..., None].expand(b, n, l)).reshape(b * n, l)
            else:
                z = torch.from_numpy(g.normal(n * l)).reshape(b * n, l)
                if self.spherical:
                    z = z / z.norm(dim=1, keepdim=True)
        T = self.langevin
        noise = torch.from_numpy(g.normal(2 * ((l + 1) // 2) * n * T) if T else np.zeros((b, 0), np.float32))
        noise = noise.reshape(b, T, n, -1)[..., :l]  # order: step, sample, latent
        cond_rows = cond.repeat_interleave(n, 0)
        for t in range(T):
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                e = self.energy(torch.cat([cond_rows, self.decoder(z)], 1))
                (grad,) = torch.autograd.grad(e.sum(), z)
            eta = self.step_size(t)
            sigma = self.noise * eta / self.eta0
            with torch.no_grad():
                scale = np.float32(eta) / (grad.norm(dim=1, keepdim=True) + 1e-8)
                z = z - scale * grad
                if sigma > 0:
                    z = z + float(sigma) * noise[:, t].reshape(b * n, l)
                if self.spherical:
                    z = z / z.norm(dim=1, keepdim=True)
        with torch.no_grad():
            e = self.energy(torch.cat([cond_rows, self.decoder(z.detach())], 1)).reshape(b, n)
        return e.min(1).values.numpy()

    def nearest_sources(self, q, k):
        """[b, k] indices of the bank entries whose sources are nearest to each row of q [b, od + ad]:
        |src|² − 2 q·src accumulated coordinate by coordinate in float32, nearest first, ties to the
        lower index."""
        d = np.repeat(self.source_norms[None, :], q.shape[0], 0)
        for c in range(q.shape[1]):
            d += (np.float32(-2) * q[:, c:c + 1].astype(np.float32)) * self.sources_t[c][None, :]
        return np.argsort(d, axis=1, kind="stable")[:, :k]

    def staged_e_min(self, cond, tidx, p1):
        """E_min with staged proposals: every row scores its first p1 drawn proposals; rows whose
        lowest energy is above the stage exit (or NaN) also score the rest; the others stop."""
        b, p = tidx.shape
        e1 = self.energy(torch.cat([cond.repeat_interleave(p1, 0), self.decoded_bank[tidx[:, :p1]].reshape(b * p1, -1)], 1))
        low = e1.reshape(b, p1).min(1).values
        go_on = ~(low <= float(self.stage_exit))
        rows = torch.nonzero(go_on).flatten()
        if len(rows):
            w = p - p1
            px = self.decoded_bank[tidx[rows, p1:]].reshape(len(rows) * w, -1)
            e2 = self.energy(torch.cat([cond[rows].repeat_interleave(w, 0), px], 1)).reshape(len(rows), w)
            low[rows] = torch.minimum(low[rows], e2.min(1).values)
        return low.numpy()

    def step_size(self, t):
        T = self.langevin
        if T <= 1 or self.eta1 == self.eta0:
            return self.eta0
        return np.float32(float(self.eta0) * (float(self.eta1) / float(self.eta0)) ** float(np.float32(t) / np.float32(T - 1)))

    def confidence(self, e):
        tab = self.table
        if tab is None:
            return np.full(len(e), np.nan, np.float32)
        n = len(tab)
        lo = np.clip(np.searchsorted(tab, e, side="right") - 1, 0, n - 2)
        width = tab[lo + 1] - tab[lo]
        f = np.where(width > 0, (e - tab[lo]) / np.where(width > 0, width, 1), np.float32(0))
        c = np.clip(np.float32(1) - (lo.astype(np.float32) + f) / np.float32(n - 1), 0, 1).astype(np.float32)
        c = np.where(e <= tab[0], np.float32(1), np.where(e >= tab[-1], np.float32(0), c))
        return np.where(np.isnan(e), np.float32(0), c).astype(np.float32)


# ---------------------------------------------------------------- protocol v1 over a ROUTER socket
class BadRequest(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def read_obs(v, od):
    """→ (float32 [B, od], single, dtype of an ndarray request or None for plain)."""
    if isinstance(v, dict) and v.get("__ndarray__") is True:
        if v.get("dtype") not in ("<f4", "<f8"):
            raise BadRequest("bad_request", f"unsupported ndarray dtype {v.get('dtype')!r}")
        shape = list(v.get("shape", []))
        a = np.frombuffer(v["data"], dtype=v["dtype"])
        if a.size != int(np.prod(shape)):
            raise BadRequest("bad_request", "ndarray data size does not match its shape")
        a, dtype = a.reshape(shape), v["dtype"]
    elif isinstance(v, list):
        try:
            a, dtype = np.array(v, dtype=np.float64), None
        except (ValueError, TypeError):
            raise BadRequest("shape_mismatch", "ragged or non-numeric obs") from None
    else:
        raise BadRequest("bad_request", "obs must be an array or an ndarray map")
    if a.ndim not in (1, 2) or a.size == 0 or a.shape[-1] != od:
        raise BadRequest("shape_mismatch", f"obs has shape {list(a.shape)}, model expects obs_dim {od}")
    if not np.isfinite(a).all():
        raise BadRequest("bad_request", "obs holds NaN or infinity")
    return np.ascontiguousarray(a.reshape(-1, od), dtype=np.float32), a.ndim == 1, dtype


def arr(values, dtype):
    """A reply array in the request's encoding (plain lists pack as float32)."""
    if dtype is None:
        return np.asarray(values, np.float64).tolist()
    a = np.ascontiguousarray(values, dtype=dtype)
    return {"__ndarray__": True, "dtype": dtype, "shape": list(a.shape), "data": a.tobytes()}


class Peer:
    def __init__(self, model_dir, rng="flowgate", max_batch=64):
        self.model, self.max_batch, self.started = Model(model_dir), max_batch, time.monotonic()
        self.rng = RNG if rng == "flowgate" else TorchDraws
        m = self.model.manifest
        self.name, s = m["name"], m["sampling"]
        self.defaults = {"steps": s["steps"], "candidates": s["candidates"],
                         "samples": s["samples"] if self.model.energy is not None else 0}
        self.limits = {"steps": s["maxSteps"], "candidates": s["maxCandidates"], "samples": s["maxSamples"]}
        self.model_batch = s["maxBatch"]

    def info(self):
        m, rel = self.model.manifest, self.model.manifest.get("reliability") or {}
        d = dict(self.defaults, check=True)
        lim = {"max_steps": self.limits["steps"], "max_candidates": self.limits["candidates"],
               "max_samples": self.limits["samples"], "max_batch": self.model_batch}
        return {"protocol": 1, "server_version": "reference-peer", "default_model": self.name,
                "models": [{"name": self.name, "version": str(m["modelVersion"]), "obs_dim": self.model.od,
                            "act_dim": self.model.ad, "action_low": self.model.low.tolist(),
                            "action_high": self.model.high.tolist(), "defaults": d, "limits": lim,
                            "threshold": float(self.model.threshold), "calibration_quantile": float(rel.get("quantile", np.nan)),
                            "provenance": {}}]}

    def parse_act(self, req):
        """→ (options tuple, obs, single, dtype, first seed)."""
        if req.get("model") not in (None, self.name):
            raise BadRequest("unknown_model", f"model {req['model']!r} is not loaded (loaded: {self.name})")
        opts = []
        for k in ("steps", "candidates", "samples"):
            v = req.get(k, self.defaults[k])
            if type(v) is not int or (v < 1 and k in req):
                raise BadRequest("bad_request", f"{k} must be an integer >= 1")
            if v > self.limits[k]:
                raise BadRequest("too_large", f"{k} {v} is above the model's limit {self.limits[k]}")
            opts.append(v)
        check = req.get("check", True)
        if type(check) is not bool:
            raise BadRequest("bad_request", "check must be a bool")
        if "obs" not in req or req["obs"] is None:
            raise BadRequest("bad_request", "act needs obs")
        obs, single, dtype = read_obs(req["obs"], self.model.od)
        if len(obs) > self.model_batch:
            raise BadRequest("too_large", f"batch of {len(obs)} is above max_batch {self.model_batch}")
        seed = req.get("seed")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        elif type(seed) is not int:
            raise BadRequest("bad_request", "seed must be an integer")
        return (*opts, check), obs, single, dtype, seed & 0xFFFFFFFFFFFFFFFF

    def compute(self, opts, jobs):
        """Runs one batch of act requests with equal options; returns the reply maps."""
        t0 = time.monotonic()
        obs = np.concatenate([j["obs"] for j in jobs])
        seeds = np.concatenate([(np.arange(len(j["obs"]), dtype=U64) + U64(j["seed"])) for j in jobs])
        steps, candidates, samples, check = opts
        r = self.model.act(obs, seeds, steps, candidates, samples, check and self.model.energy is not None, self.rng)
        compute_us = int((time.monotonic() - t0) * 1e6)
        replies, i = [], 0
        for j in jobs:
            sl, dt = slice(i, i + len(j["obs"])), j["dtype"]
            i += len(j["obs"])
            one = j["single"]
            rep = {"ok": True, "id": j["id"], "model": self.name, "version": str(self.model.manifest["modelVersion"]),
                   "action": arr(r["action"][sl][0] if one else r["action"][sl], dt)}
            for k in ("confidence", "energy", "q"):
                rep[k] = float(r[k][sl][0]) if one else arr(r[k][sl], dt)
            rep["reliable"] = bool(r["reliable"][sl][0]) if one else [bool(x) for x in r["reliable"][sl]]
            rep["threshold"] = float(self.model.threshold)
            if self.model.risk is not None:
                risk = predict(self.model.risk, {"q": np.asarray(r["q"][sl], np.float64)})
                rep["risk"] = float(risk[0]) if one else arr(risk, dt)
            rep["timing"] = {"queue_us": int((t0 - j["t"]) * 1e6), "compute_us": compute_us, "batch": len(obs)}
            replies.append(rep)
        return replies

    def serve(self, bind):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.bind(bind)
        pack = msgpack.Packer(use_bin_type=True, use_single_float=True).pack
        print(f"reference peer: {self.name} on {bind}, torch threads {torch.get_num_threads()}", flush=True)
        try:
            while True:
                if not sock.poll(1000):
                    continue
                groups = {}
                for _ in range(4096):  # everything queued now
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    t = time.monotonic()
                    if b"" not in frames[1:]:
                        continue
                    d = frames.index(b"", 1)
                    env, body = frames[:d + 1], frames[d + 1:]
                    rid = None
                    try:
                        req = msgpack.unpackb(body[0], raw=False) if len(body) == 1 else None
                        if not isinstance(req, dict):
                            raise BadRequest("bad_request", "body must be one msgpack map")
                        rid = req.get("id")
                        op = req.get("op", "act")
                        if op == "info":
                            reply = dict(ok=True, id=rid, **self.info())
                        elif op == "health":
                            reply = {"ok": True, "id": rid, "ready": True, "uptime_s": time.monotonic() - self.started}
                        elif op == "act":
                            opts, obs, single, dtype, seed = self.parse_act(req)
                            groups.setdefault(opts, []).append(
                                {"env": env, "id": rid, "obs": obs, "single": single, "dtype": dtype, "seed": seed, "t": t})
                            continue
                        else:
                            raise BadRequest("unknown_op", f"unknown op {op!r}")
                    except BadRequest as e:
                        reply = {"ok": False, "id": rid, "error": {"code": e.code, "message": str(e)}}
                    except Exception as e:  # noqa: BLE001  (undecodable body)
                        reply = {"ok": False, "id": rid, "error": {"code": "bad_request", "message": str(e)}}
                    sock.send_multipart(env + [pack(reply)])
                for opts, jobs in groups.items():
                    while jobs:  # batches of at most max_batch observations
                        take, rows = 0, 0
                        while take < len(jobs) and (take == 0 or rows + len(jobs[take]["obs"]) <= self.max_batch):
                            rows += len(jobs[take]["obs"])
                            take += 1
                        batch, jobs = jobs[:take], jobs[take:]
                        try:
                            replies = self.compute(opts, batch)
                        except Exception as e:  # noqa: BLE001
                            replies = [{"ok": False, "id": j["id"], "error": {"code": "internal", "message": str(e)}} for j in batch]
                        for j, rep in zip(batch, replies):
                            sock.send_multipart(j["env"] + [pack(rep)])
        except KeyboardInterrupt:
            pass
        finally:
            sock.close(linger=0)
            ctx.term()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="flowgate model directory")
    ap.add_argument("--bind", default="tcp://127.0.0.1:5599")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--max-batch", type=int, default=64, help="most observations computed together")
    ap.add_argument("--rng", choices=["flowgate", "torch"], default="flowgate",
                    help="flowgate: replay flowgate's draws (same actions per seed); torch: torch's generator")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    Peer(a.model, a.rng, a.max_batch).serve(a.bind)


if __name__ == "__main__":
    main()
