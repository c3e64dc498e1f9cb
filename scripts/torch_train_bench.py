#!/usr/bin/env python3
"""PyTorch CPU reference for `flowgate bench train`: the same networks, batch and step of each
training phase, timed the same way, so that flowgate's trainer can be compared side by side.

Networks (the defaults of TrainingConfig, as in the shipped hopper-medium model):
- flow policy v(s, x_t, t): Gaussian Fourier features of t (16 frequencies, scale 30) ->
  Linear(32, 32) + SiLU, then an MLP over concat(s, x_t, time embedding) with SiLU hidden layers;
- twin critic Q1, Q2 over concat(s, a), ReLU hidden layers, scalar output; Polyak targets.

Phases and their steps (see docs/training.md):
- behaviour:      flow matching on B dataset rows, Adam step;
- critic-support: M = 16 actions per next state from the behaviour flow, 8 Euler steps, chunks of
                  512 states (one chunk per step);
- critic:         in-support softmax Q-learning: B*M target rows through both target Qs, soft value,
                  TD loss of both Qs on B rows, Adam step, Polyak update;
- qipo:           lazily refreshed per-state support caches (M samples of a frozen snapshot, scored
                  by min Q), weights softmax(beta*Q/qScale) over {dataset action, M samples}, 2 pairs
                  per state drawn with those weights, flow matching on the B*2 rows, Adam step.

Timing follows TrainingBenchmark.measure: a phase's first `warmup` steps are untimed, the timed
steps are split into `repeats` windows and the median window rate is reported. Phases run in
order on one set of networks, each starting from the state the one before left. Every thread count
in --threads is a separate pass (torch.set_num_threads) over freshly initialised networks.

Prints a table, or with --json one JSON object: {"threads": {"1": {phase: steps/s}, ...},
"cpu_threads": {"1": {phase: steps per CPU second of the main thread}, ...}}. The CPU rate hardly
moves with the machine's load; with 2 threads it leaves out time the main thread waits (blocked)
for the other.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made two
# torch threads far slower than one (docs/benchmarks.md, the reference peer). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError as e:  # pragma: no cover - depends on the interpreter
    sys.exit(f"torch_train_bench.py: needs numpy and torch in this interpreter ({e}); "
             "pass a Python that has them, e.g. --compare-torch /path/to/venv/bin/python")


def mlp(sizes, act, out_act=None):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    if out_act is not None:
        layers.append(out_act())
    return nn.Sequential(*layers)


class FlowPolicy(nn.Module):
    def __init__(self, od, ad, hidden, features=16, scale=30.0, tdim=32):
        super().__init__()
        self.register_buffer("freq", torch.randn(features) * scale)
        self.time = mlp([2 * features, tdim], nn.SiLU, nn.SiLU)
        self.velocity = mlp([od + ad + tdim] + hidden + [ad], nn.SiLU)

    def forward(self, obs, x, t):
        a = (2 * math.pi) * t[:, None] * self.freq[None, :]
        temb = self.time(torch.cat([a.sin(), a.cos()], 1))
        return self.velocity(torch.cat([obs, x, temb], 1))


class TwinCritic(nn.Module):
    def __init__(self, od, ad, hidden):
        super().__init__()
        self.q1 = mlp([od + ad] + hidden + [1], nn.ReLU)
        self.q2 = mlp([od + ad] + hidden + [1], nn.ReLU)

    def forward(self, obs, act):
        x = torch.cat([obs, act], 1)
        return self.q1(x).squeeze(1), self.q2(x).squeeze(1)

    def min_q(self, obs, act):
        a, b = self(obs, act)
        return torch.minimum(a, b)


@torch.no_grad()
def sample(policy, obs, per, steps):
    rows = obs.repeat_interleave(per, 0)
    x = torch.randn(rows.shape[0], policy.velocity[-1].out_features)
    h = 1.0 / steps
    t = torch.empty(rows.shape[0])
    for k in range(steps):
        t.fill_(k * h)
        x += h * policy(rows, x, t)
    return x.clamp_(-1, 1)


class Phases:
    """The four phases on one set of networks, in the order a run steps them."""

    def __init__(self, d, batch, hidden, support=16, flow_steps=8, chunk=512):
        self.obs = torch.from_numpy(d["obs"])
        self.act = torch.from_numpy(d["act"])
        self.nobs = torch.from_numpy(d["nobs"])
        self.rew = torch.from_numpy(d["rew"])
        self.notdone = torch.from_numpy(d["notdone"])
        self.n, od = self.obs.shape
        ad = self.act.shape[1]
        self.od, self.ad, self.b, self.m, self.k, self.chunk = od, ad, batch, support, flow_steps, chunk
        self.policy = FlowPolicy(od, ad, hidden)
        self.critic = TwinCritic(od, ad, hidden)
        self.target = TwinCritic(od, ad, hidden)
        self.target.load_state_dict(self.critic.state_dict())
        self.target.requires_grad_(False)
        self.popt = torch.optim.Adam(self.policy.parameters(), lr=3e-4)
        self.copt = torch.optim.Adam(self.critic.parameters(), lr=3e-4)
        self.support = torch.zeros(self.n, support, ad)
        self.support_done = 0
        self.gamma, self.tau, self.beta_q, self.beta, self.pairs = 0.99, 0.005, 1.0, 3.0, 2
        self.qipo_ready = False

    def behaviour(self):
        i = torch.randint(self.n, (self.b,))
        self._flow_step(self.obs[i], self.act[i])

    def _flow_step(self, obs, act):
        x0 = torch.randn_like(act)
        t = torch.rand(act.shape[0])
        xt = (1 - t[:, None]) * x0 + t[:, None] * act
        v = self.policy(obs, xt, t)
        loss = ((v - (act - x0)) ** 2).sum(1).mean()
        self.popt.zero_grad(set_to_none=True)
        loss.backward()
        self.popt.step()

    def critic_support(self):
        s = self.support_done % self.n
        e = min(s + self.chunk, self.n)
        self.support[s:e] = sample(self.policy, self.nobs[s:e], self.m, self.k).view(e - s, self.m, self.ad)
        self.support_done = e

    def critic_step(self):
        i = torch.randint(self.n, (self.b,))
        with torch.no_grad():
            nobs = self.nobs[i].repeat_interleave(self.m, 0)
            qt = self.target.min_q(nobs, self.support[i].reshape(-1, self.ad)).view(self.b, self.m)
            v = (torch.softmax(self.beta_q * qt, 1) * qt).sum(1)
            y = self.rew[i] + self.gamma * self.notdone[i] * v
        q1, q2 = self.critic(self.obs[i], self.act[i])
        loss = 0.5 * (((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean())
        self.copt.zero_grad(set_to_none=True)
        loss.backward()
        self.copt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.target.parameters()), list(self.critic.parameters()), self.tau)

    def _qipo_init(self):
        self.snapshot = FlowPolicy(self.od, self.ad, [l.out_features for l in self.policy.velocity if isinstance(l, nn.Linear)][:-1])
        self.snapshot.load_state_dict(self.policy.state_dict())
        with torch.no_grad():
            self.data_q = torch.cat([self.critic.min_q(self.obs[s:s + 4096], self.act[s:s + 4096]) for s in range(0, self.n, 4096)])
        self.cache_a = torch.zeros(self.n, self.m, self.ad)
        self.cache_q = torch.zeros(self.n, self.m)
        self.fresh = torch.zeros(self.n, dtype=torch.bool)
        probe = torch.randint(self.n, (min(self.n, 2048),))
        self._refresh(probe)
        allq = torch.cat([self.data_q[probe][:, None], self.cache_q[probe]], 1)
        self.q_scale = max(allq.std(1, unbiased=False).mean().item(), 1e-6)
        self.qipo_ready = True

    @torch.no_grad()
    def _refresh(self, idx):
        stale = torch.unique(idx[~self.fresh[idx]])
        for s in range(0, stale.numel(), 4096):
            u = stale[s:s + 4096]
            a = sample(self.snapshot, self.obs[u], self.m, self.k)
            q = self.critic.min_q(self.obs[u].repeat_interleave(self.m, 0), a)
            self.cache_a[u] = a.view(-1, self.m, self.ad)
            self.cache_q[u] = q.view(-1, self.m)
            self.fresh[u] = True

    def qipo(self):
        if not self.qipo_ready:
            self._qipo_init()
        i = torch.randint(self.n, (self.b,))
        self._refresh(i)
        with torch.no_grad():
            q = torch.cat([self.data_q[i][:, None], self.cache_q[i]], 1)
            g = torch.softmax(self.beta * q / self.q_scale, 1)
            j = torch.multinomial(g, self.pairs, replacement=True)  # b x pairs
            acts = torch.cat([self.act[i][:, None, :], self.cache_a[i]], 1)
            rows = acts.gather(1, j[:, :, None].expand(-1, -1, self.ad)).reshape(-1, self.ad)
            obs = self.obs[i].repeat_interleave(self.pairs, 0)
        self._flow_step(obs, rows)


def measure(fn, total, steps, warmup, repeats):
    """Median-of-windows steps per wall second and per CPU second of this (the stepping) thread,
    as TrainingBenchmark.measure."""
    w = min(warmup, max(total - repeats, 0))
    for _ in range(w):
        fn()
    timed = min(steps, total - w)
    windows = max(1, min(repeats, timed))
    rates, cpu_rates, done = [], [], 0
    for k in range(windows):
        n = timed * (k + 1) // windows - done
        if n <= 0:
            continue
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
        cpu_rates.append(n / max(time.thread_time() - c0, 1e-9))
        done += n
    return statistics.median(rates), statistics.median(cpu_rates)


def load(path, subset):
    try:
        z = np.load(path)
        obs = z["observations"][:subset].astype(np.float32)
        act = z["actions"][:subset].astype(np.float32)
        nobs = z["next_observations"][:subset].astype(np.float32)
        rew = z["rewards"][:subset].astype(np.float32)
        term = z["terminals"][:subset].astype(bool)
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"torch_train_bench.py: cannot read dataset {path}: {e}")
    mean, std = obs.mean(0), np.maximum(obs.std(0), 1e-3)
    return {"obs": (obs - mean) / std, "nobs": (nobs - mean) / std, "act": np.clip(act, -1, 1),
            "rew": rew, "notdone": (~term).astype(np.float32)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--subset", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", default="256,256,256", help="hidden widths of every network")
    p.add_argument("--threads", default="1,2", help="torch thread counts to measure, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args()
    if min(a.steps, a.repeats, a.subset, a.batch_size) < 1 or a.warmup < 0:
        sys.exit("torch_train_bench.py: --steps, --repeats, --subset and --batch-size must be positive, --warmup not negative")
    try:
        threads = [int(x) for x in a.threads.split(",")]
        hidden = [int(x) for x in a.hidden.split(",")]
    except ValueError:
        sys.exit(f"torch_train_bench.py: --threads '{a.threads}' and --hidden '{a.hidden}' must be comma-separated integers")
    if not threads or min(threads) < 1 or not hidden or min(hidden) < 1:
        sys.exit("torch_train_bench.py: --threads and --hidden need positive integers")
    data = load(a.dataset, a.subset)
    total = a.warmup + a.steps
    out = {"torch": torch.__version__, "transitions": int(data["obs"].shape[0]), "batch_size": a.batch_size,
           "threads": {}, "cpu_threads": {}}
    for n in threads:
        torch.set_num_threads(n)
        torch.manual_seed(a.seed)
        ph = Phases(data, a.batch_size, hidden)
        support_total = math.ceil(ph.n / ph.chunk)
        r, c = {}, {}
        r["behaviour"], c["behaviour"] = measure(ph.behaviour, total, a.steps, a.warmup, a.repeats)
        r["critic-support"], c["critic-support"] = measure(ph.critic_support, support_total, a.steps, a.warmup, a.repeats)
        r["critic"], c["critic"] = measure(ph.critic_step, total, a.steps, a.warmup, a.repeats)
        r["qipo"], c["qipo"] = measure(ph.qipo, total, a.steps, a.warmup, a.repeats)
        out["threads"][str(n)] = r
        out["cpu_threads"][str(n)] = c
    if a.json:
        print(json.dumps(out))
        return
    print(f"torch {torch.__version__}, {out['transitions']} transitions, batch {a.batch_size}: "
          "steps/s (steps per CPU second of the main thread)")
    print("phase           " + "".join(f"{'threads ' + str(n):>20}" for n in threads))
    for phase in ["behaviour", "critic-support", "critic", "qipo"]:
        cells = (f"{out['threads'][str(n)][phase]:.2f} ({out['cpu_threads'][str(n)][phase]:.2f})" for n in threads)
        print(f"{phase:<16}" + "".join(f"{cell:>20}" for cell in cells))


if __name__ == "__main__":
    main()
