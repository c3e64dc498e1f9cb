"""Alarms a safety monitor can act on: the disturbance protocol of issue 14, rerunnable.

    python -m flowgate_client.alarms run --bin .build/release/flowgate --model models/hopper-medium \\
        --env HopperBulletEnv --episodes 30 --clean-episodes 20 --seed 100 --out runs/alarms/hopper-medium.json
    python -m flowgate_client.alarms report runs/alarms/hopper-medium.json [--plot docs/img/alarms-hopper-medium.png]

``run`` starts ``flowgate serve`` on the model (or uses ``--endpoint``) and drives real pybullet
episodes, every action served over the socket, under four conditions:

  none          undisturbed (false alarms are counted on the episodes of this condition that do not fall)
  action-noise  Gaussian noise of std ``--action-noise`` added to the served action (then clipped)
  obs-noise     Gaussian noise of std ``--obs-noise`` added to the observation sent to the server
  push          a horizontal force of ``--push`` newtons (random sign along x) on the hopper's torso
                or the double pendulum's top pole (pybullet applyExternalForce, world frame), every
                env step

Each disturbance lasts ``--duration`` (30) env steps from an onset drawn uniformly in
[``--onset-min``, ``--onset-max``]. Disturbed episodes end ``--post-steps`` after the disturbance
(truncated, not a fall) or when the environment terminates (a fall). Every field the reply carries
is recorded per step (``<out>.steps.npz``); each request names its episode as a ``stream``, so a
server that keeps per-stream state (issue 14) answers with its ``risk`` and ``alarm`` keys.

``report`` (also run at the end of ``run``) computes, per condition and per alarm rule:
falls, recall (an alarm within ``--lookback`` steps before the fall and not before the onset),
lead time (fall step − first alarm step in that window: median and 10th percentile), false
alarms per 1000 steps (alarm onsets on undisturbed episodes that do not fall), and the AUROC of
each risk signal for "fall within ``--horizon`` (20) steps" (positives: steps less than the
horizon before a fall; negatives: every other step whose future is known).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .client import Client
from .envs import MAX_EPISODE_STEPS, canonical_env_name, make_env

CONDITIONS = ("none", "action-noise", "obs-noise", "push")
KNOWN_KEYS = ("confidence", "reliable", "energy", "q")


# ---------------------------------------------------------------------------------------------
# running episodes

def _request_seed(*parts) -> int:
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def push_part(env, force_xyz) -> None:
    """A force (world frame, N) on the robot's main body for the next physics step: the hopper's
    torso; the double pendulum has none, so its top pole (``pole2``), where a push topples it."""
    robot = env.robot
    part = robot.robot_body if robot.robot_body is not None else robot.parts["pole2"]
    body = part.bodies[part.bodyIndex]
    p = env._p
    link = part.bodyPartIndex
    pos = p.getBasePositionAndOrientation(body)[0] if link == -1 else p.getLinkState(body, link)[0]
    p.applyExternalForce(body, link, list(map(float, force_xyz)), list(pos), p.WORLD_FRAME)


def run_episode(env, client: Client, env_name: str, cond: str, ep_seed: int, args, stream: str | None) -> dict:
    """One episode; returns per-step arrays (reply fields and every extra scalar key of the reply)."""
    rng = np.random.default_rng(np.random.SeedSequence([ep_seed, CONDITIONS.index(cond), 14]))
    env.seed(int(ep_seed))
    obs = env.reset()
    onset = int(rng.integers(args.onset_min, args.onset_max + 1)) if cond != "none" else -1
    end_dist = onset + args.duration
    push_sign = float(rng.choice([-1.0, 1.0]))
    max_steps = args.max_steps if cond == "none" else min(args.max_steps, end_dist + args.post_steps)
    rec: dict[str, list] = {k: [] for k in ("confidence", "reliable", "energy", "q", "disturbed", "queue_us", "compute_us", "rtt_us")}
    extra: dict[str, list] = {}
    done = False
    t = 0
    for t in range(max_steps):
        active = onset >= 0 and onset <= t < end_dist
        sent = obs
        if active and cond == "obs-noise":
            sent = obs + args.obs_noise * rng.standard_normal(obs.shape)
        t0 = time.perf_counter()
        extra_keys = {"stream": stream} if stream else None
        r = client.act(sent, seed=_request_seed(ep_seed, cond, t), steps=args.steps, extra=extra_keys)
        rec["rtt_us"].append((time.perf_counter() - t0) * 1e6)
        rec["confidence"].append(float(r.confidence) if r.confidence is not None else math.nan)
        rec["reliable"].append(bool(r.reliable))
        rec["energy"].append(float(r.energy) if r.energy is not None else math.nan)
        rec["q"].append(float(r.q) if r.q is not None else math.nan)
        rec["disturbed"].append(active)
        rec["queue_us"].append(r.timing.get("queue_us", -1))
        rec["compute_us"].append(r.timing.get("compute_us", -1))
        for k, v in r.raw.items():
            if k in KNOWN_KEYS or k in ("ok", "id", "model", "version", "action", "threshold", "timing"):
                continue
            if isinstance(v, (bool, int, float)) and not isinstance(v, type(None)):
                extra.setdefault(k, [math.nan] * t).append(float(v))
        for k in extra:
            if len(extra[k]) < t + 1:
                extra[k].append(math.nan)
        action = np.asarray(r.action, dtype=np.float64)
        if active and cond == "action-noise":
            action = action + args.action_noise * rng.standard_normal(action.shape)
        if active and cond == "push":
            push_part(env, (push_sign * args.push, 0.0, 0.0))
        obs, _, done, _ = env.step(np.clip(action, -1.0, 1.0))
        if done:
            break
    length = t + 1
    out = {k: np.asarray(v) for k, v in rec.items()}
    for k, v in extra.items():
        out["x_" + k] = np.asarray(v, dtype=np.float64)
    return {"condition": cond, "seed": int(ep_seed), "length": length, "fell": bool(done),
            "onset": onset, "stream": stream, "steps": out}


def save_steps(path: Path, episodes: list[dict]) -> None:
    keys = sorted({k for e in episodes for k in e["steps"]})
    arrays = {}
    for k in keys:
        parts = []
        for e in episodes:
            v = e["steps"].get(k)
            parts.append(v if v is not None else np.full(e["length"], np.nan))
        arrays[k] = np.concatenate(parts) if parts else np.zeros(0)
    arrays["episode"] = np.concatenate([np.full(e["length"], i) for i, e in enumerate(episodes)]) if episodes else np.zeros(0)
    np.savez_compressed(path, **arrays)


def load_steps(path: Path, meta: list[dict]) -> list[dict]:
    z = np.load(path)
    ep = z["episode"]
    out = []
    for i, m in enumerate(meta):
        sel = ep == i
        e = dict(m)
        e["steps"] = {k: z[k][sel] for k in z.files if k != "episode"}
        out.append(e)
    return out


# ---------------------------------------------------------------------------------------------
# metrics

def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count one half), numpy only."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    ok = np.isfinite(scores)
    scores, labels = scores[ok], labels[ok]
    npos, nneg = int(labels.sum()), int((~labels).sum())
    if npos == 0 or nneg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = 0.5 * (i + j) + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def consecutive(x: np.ndarray, k: int) -> np.ndarray:
    """True at t when x[t-k+1..t] are all true."""
    x = np.asarray(x, dtype=bool)
    run = np.zeros(len(x), dtype=np.int64)
    c = 0
    for i, v in enumerate(x):
        c = c + 1 if v else 0
        run[i] = c
    return run >= k


def rule_states(e: dict, rule: str) -> np.ndarray | None:
    """Alarm state per step for a rule name: flag, k<N> (N consecutive unreliable), server (the
    reply's `alarm` key), risk>=P (the reply's `risk` key above P)."""
    s = e["steps"]
    unreliable = ~np.asarray(s["reliable"], dtype=bool)
    if rule == "flag":
        return unreliable
    if rule.startswith("k") and rule[1:].isdigit():
        return consecutive(unreliable, int(rule[1:]))
    if rule == "server":
        a = s.get("x_alarm")
        return None if a is None else np.nan_to_num(a) > 0.5
    if rule.startswith("risk>="):
        r = s.get("x_risk")
        return None if r is None else np.nan_to_num(r) >= float(rule[6:])
    raise ValueError(f"unknown rule {rule!r}")


def signal_values(e: dict, name: str) -> np.ndarray | None:
    s = e["steps"]
    if name == "1-confidence":
        return 1.0 - np.asarray(s["confidence"], dtype=np.float64)
    if name == "energy":
        return np.asarray(s["energy"], dtype=np.float64)
    if name == "-q":
        return -np.asarray(s["q"], dtype=np.float64)
    v = s.get("x_" + name)
    return None if v is None else np.asarray(v, dtype=np.float64)


def onsets(alarm: np.ndarray) -> np.ndarray:
    a = np.asarray(alarm, dtype=bool)
    prev = np.concatenate([[False], a[:-1]])
    return np.flatnonzero(a & ~prev)


def evaluate_condition(eps: list[dict], rules: list[str], signals: list[str], args) -> dict:
    falls = [e for e in eps if e["fell"]]
    out: dict = {"episodes": len(eps), "falls": len(falls), "steps": int(sum(e["length"] for e in eps)),
                 "rules": {}, "auroc": {}}
    for rule in rules:
        caught, leads = 0, []
        states = [rule_states(e, rule) for e in eps]
        if any(st is None for st in states):
            continue
        for e, st in zip(eps, states):
            if not e["fell"]:
                continue
            T = e["length"]
            # a fall before the onset (the disturbance never came) is scored as an undisturbed one
            onset = e["onset"] if 0 <= e["onset"] < T else 0
            lo = max(0, T - args.lookback, onset)
            hit = np.flatnonzero(st[lo:T])
            if len(hit):
                caught += 1
                leads.append(T - (lo + int(hit[0])))
        clean = [(e, st) for e, st in zip(eps, states) if e["condition"] == "none" and not e["fell"]]
        fa_steps = sum(e["length"] for e, _ in clean)
        fa = sum(len(onsets(st)) for _, st in clean)
        on_share = sum(int(st.sum()) for _, st in clean) / fa_steps if fa_steps else None
        nf_dist = [(e, st) for e, st in zip(eps, states) if e["condition"] != "none" and not e["fell"]]
        alarmed_nf = sum(1 for e, st in nf_dist if st[max(0, e["onset"]):].any())
        out["rules"][rule] = {
            "recall": caught / len(falls) if falls else None, "caught": caught,
            "lead_median": float(np.median(leads)) if leads else None,
            "lead_p10": float(np.percentile(leads, 10)) if leads else None,
            "leads": leads,
            "false_alarms_per_1000": 1000.0 * fa / fa_steps if fa_steps else None,
            "false_alarm_steps": fa_steps,
            "alarm_time_share_clean": on_share,
            "alarm_share_disturbed_nonfalling": alarmed_nf / len(nf_dist) if nf_dist else None,
        }
    for sig in signals:
        xs, ys = [], []
        for e in eps:
            v = signal_values(e, sig)
            if v is None:
                break
            T = e["length"]
            t = np.arange(T)
            y = (T - t <= args.horizon) if e["fell"] else np.zeros(T, dtype=bool)
            known = np.ones(T, dtype=bool) if e["fell"] else (t < T - args.horizon)
            xs.append(v[known])
            ys.append(y[known])
        else:
            if xs:
                out["auroc"][sig] = auroc(np.concatenate(xs), np.concatenate(ys))
    return out


def evaluate(episodes: list[dict], args) -> dict:
    rules = list(args.rules)
    signals = list(args.signals)
    res = {"horizon": args.horizon, "lookback": args.lookback, "conditions": {}}
    clean = [e for e in episodes if e["condition"] == "none"]
    for cond in CONDITIONS:
        eps = [e for e in episodes if e["condition"] == cond]
        if not eps:
            continue
        # false alarms always come from the undisturbed episodes
        res["conditions"][cond] = evaluate_condition(eps if cond == "none" else eps + clean, rules, signals, args)
        res["conditions"][cond]["episodes"] = len(eps)
        res["conditions"][cond]["falls"] = sum(e["fell"] for e in eps)
        res["conditions"][cond]["steps"] = int(sum(e["length"] for e in eps))
    res["conditions"]["all"] = evaluate_condition(episodes, rules, signals, args)
    return res


def print_table(res: dict) -> None:
    print(f"\n| condition | rule | falls | recall | lead median / p10 | false alarms / 1000 | time in alarm, undisturbed | alarmed, disturbed non-falling |")
    print("|---|---|---|---|---|---|---|---|")
    for cond, c in res["conditions"].items():
        for rule, r in c["rules"].items():
            f = lambda x, p=2: "–" if x is None else f"{x:.{p}f}"  # noqa: E731
            print(f"| {cond} | {rule} | {c['falls']}/{c['episodes']} | {f(r['recall'])} | {f(r['lead_median'], 0)} / {f(r['lead_p10'], 0)} "
                  f"| {f(r['false_alarms_per_1000'], 1)} | {f(r['alarm_time_share_clean'], 3)} | {f(r['alarm_share_disturbed_nonfalling'])} |")
    print("\n| condition | " + " | ".join(f"AUROC {s}" for s in next(iter(res["conditions"].values()))["auroc"]) + " |")
    for cond, c in res["conditions"].items():
        print(f"| {cond} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in c["auroc"].values()) + " |")


def plot(res: dict, episodes: list[dict], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    conds = [c for c in res["conditions"] if c != "all"]
    rules = list(next(iter(res["conditions"].values()))["rules"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    w = 0.8 / max(1, len(rules))
    for i, rule in enumerate(rules):
        vals = [res["conditions"][c]["rules"].get(rule, {}).get("recall") or 0 for c in conds]
        ax.bar(np.arange(len(conds)) + i * w, vals, w, label=rule)
    ax.axhline(0.95, color="k", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(conds)) + w * (len(rules) - 1) / 2, conds)
    ax.set_ylabel("alarm recall")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax = axes[1]
    data, labels = [], []
    for rule in rules:
        for c in conds:
            leads = res["conditions"][c]["rules"].get(rule, {}).get("leads") or []
            data.append(leads if leads else [np.nan])
            labels.append(f"{rule}\n{c}")
    ax.boxplot(data, whis=(10, 90), showfliers=False)
    ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=90, fontsize=6)
    ax.axhline(10, color="r", ls=":", lw=0.8)
    ax.axhline(20, color="k", ls="--", lw=0.8)
    ax.set_ylabel("lead time (steps; whiskers 10th/90th pct)")
    ax = axes[2]
    fa = [res["conditions"]["none"]["rules"][r]["false_alarms_per_1000"] or 0 for r in rules] if "none" in res["conditions"] else []
    ax.bar(np.arange(len(fa)), fa)
    ax.axhline(2, color="k", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(fa)), rules, rotation=30, fontsize=7)
    ax.set_ylabel("false alarms / 1000 steps (undisturbed, no fall)")
    ax.set_yscale("symlog", linthresh=1)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# CLI

def add_metric_args(ap):
    ap.add_argument("--horizon", type=int, default=20, help="AUROC label: fall within this many steps")
    ap.add_argument("--lookback", type=int, default=100, help="an alarm counts for a fall within this many steps before it")
    ap.add_argument("--rules", type=lambda s: s.split(","), default=["flag", "k3", "server"])
    ap.add_argument("--signals", type=lambda s: s.split(","), default=["1-confidence", "energy", "-q", "risk"])
    ap.add_argument("--plot", help="write the plot here (PNG)")


def cmd_run(args) -> int:
    from .evaluate import Server, model_name
    env_name = canonical_env_name(args.env)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        server = Server(args.bin, [args.model])
        endpoint = server.endpoint
    name = args.model_name or model_name(args.model)
    client = Client(endpoint, timeout_ms=args.timeout_ms, retries=2, model=name)
    env = make_env(env_name, args.seed)
    episodes = []
    t_start = time.monotonic()
    conds = [c for c in args.conditions.split(",") if c]
    try:
        for ci, cond in enumerate(conds):
            n = args.clean_episodes if cond == "none" else args.episodes
            for k in range(n):
                ep_seed = args.seed + 1000 * CONDITIONS.index(cond) + k
                stream = None if args.no_stream else f"{args.seed}-{cond}-{k}"
                e = run_episode(env, client, env_name, cond, ep_seed, args, stream)
                episodes.append(e)
                print(f"{cond:>12} {k:3d}: length {e['length']:4d} {'FELL' if e['fell'] else '    '} onset {e['onset']:4d} "
                      f"unreliable {100 * (1 - e['steps']['reliable'].mean()):5.1f}%  "
                      f"({time.monotonic() - t_start:6.0f} s)", flush=True)
    finally:
        env.close()
        client.close()
        if server is not None:
            server.stop()
    meta = [{k: v for k, v in e.items() if k != "steps"} for e in episodes]
    steps_path = out.with_suffix(".steps.npz")
    save_steps(steps_path, episodes)
    summary = {"env": env_name, "model": name, "model_dir": args.model, "seed": args.seed,
               "protocol": {"duration": args.duration, "onset": [args.onset_min, args.onset_max],
                            "post_steps": args.post_steps, "max_steps": args.max_steps,
                            "action_noise": args.action_noise, "obs_noise": args.obs_noise, "push_newtons": args.push,
                            "steps": args.steps},
                   "wall_s": time.monotonic() - t_start, "steps_file": steps_path.name, "episodes": meta}
    rtt = np.concatenate([e["steps"]["rtt_us"] for e in episodes]) if episodes else np.zeros(1)
    summary["rtt_us"] = {"p50": float(np.percentile(rtt, 50)), "p99": float(np.percentile(rtt, 99))}
    summary["metrics"] = evaluate(episodes, args)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print_table(summary["metrics"])
    if args.plot:
        plot(summary["metrics"], episodes, args.plot, f"{name}: alarms under disturbances ({env_name})")
    return 0


def load_run(path: str) -> tuple[dict, list[dict]]:
    p = Path(path)
    summary = json.loads(p.read_text())
    episodes = load_steps(p.parent / summary["steps_file"], summary["episodes"])
    return summary, episodes


def cmd_report(args) -> int:
    summaries, episodes = [], []
    for path in args.runs:
        s, eps = load_run(path)
        summaries.append(s)
        episodes += eps
    res = evaluate(episodes, args)
    print_table(res)
    if args.plot:
        plot(res, episodes, args.plot, args.title or f"{summaries[0]['model']}: alarms under disturbances")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": args.runs, "metrics": res}, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.alarms", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="drive episodes through the server and evaluate")
    r.add_argument("--bin", default=".build/release/flowgate")
    r.add_argument("--model", required=True, help="model directory (served unless --endpoint)")
    r.add_argument("--model-name", help="model name on the server (default: the directory's manifest)")
    r.add_argument("--endpoint", help="use a running server instead of starting one")
    r.add_argument("--env", default="HopperBulletEnv")
    r.add_argument("--conditions", default=",".join(CONDITIONS))
    r.add_argument("--episodes", type=int, default=30, help="episodes per disturbed condition")
    r.add_argument("--clean-episodes", type=int, default=20, help="undisturbed episodes")
    r.add_argument("--seed", type=int, default=100, help="episode seeds: seed + 1000*condition + k (training data used 0…)")
    r.add_argument("--steps", type=int, help="flow steps K (model default if unset)")
    r.add_argument("--duration", type=int, default=30)
    r.add_argument("--onset-min", type=int, default=50)
    r.add_argument("--onset-max", type=int, default=300)
    r.add_argument("--post-steps", type=int, default=200, help="disturbed episodes end this long after the disturbance")
    r.add_argument("--max-steps", type=int, default=MAX_EPISODE_STEPS)
    r.add_argument("--action-noise", type=float, default=0.5)
    r.add_argument("--obs-noise", type=float, default=0.2)
    r.add_argument("--push", type=float, default=30.0, help="newtons")
    r.add_argument("--no-stream", action="store_true", help="do not name a stream in requests")
    r.add_argument("--timeout-ms", type=int, default=5000)
    r.add_argument("--out", required=True)
    add_metric_args(r)
    p = sub.add_parser("report", help="evaluate recorded runs (several are pooled)")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out")
    p.add_argument("--title")
    add_metric_args(p)
    args = ap.parse_args(argv)
    return cmd_run(args) if args.cmd == "run" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
