"""Fit the failure-risk model and the stream alarm rule of a model from recorded alarm runs, and
store them in the model's manifest (the optional ``risk`` section the server reads).

    python -m flowgate_client.risk fit runs/alarms/train-hopper-medium.json \\
        --manifest models/hopper-medium/manifest.json [--horizon 20] [--write]
    python -m flowgate_client.risk rescore runs/alarms/eval-hopper-medium.json \\
        --manifest models/hopper-medium/manifest.json [--out report.json] [--plot alarms.png]

Training episodes (``alarms run`` with training seeds) are split by episode: even episodes fit
the logistic models, odd ones calibrate them (Platt scaling folded into the weights) and choose
the alarm rule. Evaluation uses other seeds (``alarms run --seed ...``), never these.

The features mirror ``Sources/FlowgateServer/RiskModel.swift`` exactly (``stream_features``):
``q`` (critic value of the chosen action), ``energy`` (E_min), and for streams ``q_drop``
(moving average of earlier q minus q), ``q_delta`` (previous q minus q) and ``energy_trend``
(E_min minus its moving average). ``--stateless-features`` and ``--stream-features`` choose a
subset (the shipped models use ``q`` and ``q,q_drop,q_delta``: their energy check changed after
the training episodes were recorded).

``rescore`` recomputes, from the recorded q (and E_min), the stream risk and alarm a server with
the manifest's risk section would serve on each recorded episode, and reports them like
``alarms report`` (rule ``server``, signal ``risk``; ``risk_stateless`` is the stateless model).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .alarms import add_metric_args, auroc, evaluate, load_run, plot, print_table
from .evaluate import write_atomic

STATELESS = ["q", "energy"]
STREAM = ["q", "energy", "q_drop", "q_delta", "energy_trend"]


def stream_features(q: np.ndarray, energy: np.ndarray, rate: float) -> dict[str, np.ndarray]:
    """The server's per-stream features for one episode, step by step (RiskModel.step)."""
    q = np.asarray(q, dtype=np.float32).astype(np.float64)
    le = np.asarray(energy, dtype=np.float32).astype(np.float64)  # E_min (may be negative)
    n = len(q)
    f = {k: np.zeros(n) for k in STREAM}
    f["q"] = q
    f["energy"] = le
    qa = la = qp = 0.0
    for t in range(n):
        if t > 0:
            f["q_drop"][t] = qa - q[t]
            f["q_delta"][t] = qp - q[t]
            f["energy_trend"][t] = le[t] - la
            qa += rate * (q[t] - qa)
            la += rate * (le[t] - la)
        else:
            qa, la = q[t], le[t]
        qp = q[t]
    return f


def labels(e: dict, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, known): y = fall within `horizon` steps; known = the future is known for that step."""
    T = e["length"]
    t = np.arange(T)
    if e["fell"]:
        return (T - t <= horizon), np.ones(T, dtype=bool)
    return np.zeros(T, dtype=bool), t < T - horizon


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-4, iters: int = 100) -> tuple[np.ndarray, float]:
    """Damped Newton on the L2-regularised mean log loss; X already standardised. Falls are
    nearly separable by the critic value, so the L2 term and step halving keep the weights finite."""
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(d + 1)
    w[-1] = math.log(max(y.mean(), 1e-6) / max(1 - y.mean(), 1e-6))
    reg = np.full(d + 1, l2)
    reg[-1] = 0

    def loss(w):
        z = Xb @ w
        return float(np.mean(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(reg * w * w))

    cur = loss(w)
    for _ in range(iters):
        p = _sigmoid(Xb @ w)
        g = Xb.T @ (p - y) / n + reg * w
        H = (Xb * (p * (1 - p))[:, None]).T @ Xb / n + np.diag(reg) + 1e-10 * np.eye(d + 1)
        step = np.linalg.solve(H, g)
        t = 1.0
        while t > 1e-6:
            nxt = loss(w - t * step)
            if nxt <= cur:
                break
            t *= 0.5
        w = w - t * step
        if cur - nxt < 1e-12:
            cur = nxt
            break
        cur = nxt
    return w[:-1], float(w[-1])


def design(episodes, names, rate, horizon):
    X, Y = [], []
    for e in episodes:
        f = stream_features(e["steps"]["q"], e["steps"]["energy"], rate)
        y, known = labels(e, horizon)
        X.append(np.stack([f[k] for k in names], axis=1)[known])
        Y.append(y[known])
    return np.concatenate(X), np.concatenate(Y).astype(np.float64)


def fit_model(fit_eps, cal_eps, names, rate, horizon) -> dict:
    X, y = design(fit_eps, names, rate, horizon)
    mean, std = X.mean(0), X.std(0) + 1e-9
    w, b = fit_logistic((X - mean) / std, y)
    # Platt scaling on the calibration episodes, folded in: sigmoid(a*z + c)
    Xc, yc = design(cal_eps, names, rate, horizon)
    z = ((Xc - mean) / std) @ w + b
    ac, cc = fit_logistic(z[:, None], yc, l2=0.0)
    a, c = float(ac[0]), cc
    return {"features": names, "mean": mean.tolist(), "std": std.tolist(),
            "weights": (a * w).tolist(), "bias": float(a * b + c)}


def predict(model: dict, f: dict[str, np.ndarray]) -> np.ndarray:
    z = np.full(len(f["q"]), model["bias"])
    for i, k in enumerate(model["features"]):
        z = z + model["weights"][i] * (f[k] - model["mean"][i]) / model["std"][i]
    # the server's form, 1 / (1 + e^-z) in double, then float: (1 + tanh(z/2)) / 2 loses the last
    # float bit of small risks to cancellation
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def alarm_states(risk: np.ndarray, rule: dict) -> np.ndarray:
    """The server's alarm rule (RiskModel.step), step by step."""
    on, off, k, n, clear_after = rule["on"], rule["off"], rule["k"], rule["n"], rule["clear_after"]
    mask = (1 << n) - 1
    above, calm, alarm = 0, 0, False
    out = np.zeros(len(risk), dtype=bool)
    for t, r in enumerate(risk):
        r = float(r)
        above = ((above << 1) | (1 if r >= on else 0)) & mask
        calm = calm + 1 if r < off else 0
        if not alarm:
            if bin(above).count("1") >= k:
                alarm, calm = True, 0
        elif calm >= clear_after:
            alarm, above = False, 0
        out[t] = alarm
    return out


def rule_metrics(eps, risks, rule, lookback=100):
    caught, leads, fa, fa_steps, falls, on_steps = 0, [], 0, 0, 0, 0
    for e, r in zip(eps, risks):
        st = alarm_states(r, rule)
        T = e["length"]
        if e["fell"]:
            falls += 1
            onset = e["onset"] if 0 <= e["onset"] < T else 0  # fell before the disturbance came
            lo = max(0, T - lookback, onset)
            hit = np.flatnonzero(st[lo:T])
            if len(hit):
                caught += 1
                leads.append(T - (lo + int(hit[0])))
        elif e["condition"] == "none":
            fa += int((st & ~np.concatenate([[False], st[:-1]])).sum())
            fa_steps += T
            on_steps += int(st.sum())
    return {"recall": caught / max(1, falls), "falls": falls,
            "lead_median": float(np.median(leads)) if leads else 0.0,
            "lead_p10": float(np.percentile(leads, 10)) if leads else 0.0,
            "fa_per_1000": 1000.0 * fa / max(1, fa_steps), "fa_steps": fa_steps,
            "alarm_time_share_clean": on_steps / max(1, fa_steps)}


def choose_rule(eps, risks, max_fa: float, max_on_share: float = 0.01, min_on: float = 0.01) -> tuple[dict, dict, list]:
    """The rule with the highest recall, then 10th-percentile and median lead, among those with at
    most `max_fa` alarm onsets per 1000 undisturbed steps AND the alarm on for at most
    `max_on_share` of those steps (an alarm that never clears would have no onsets to count).
    Thresholds below `min_on` are not tried: a probability that low is below what the calibration
    half resolves, and a rule tuned there fits the few undisturbed training episodes, not the robot
    (the double pendulum's first fit chose 3e-5 and spent 17 % of held-out normal steps in alarm)."""
    allr = np.concatenate(risks)
    grid = sorted(set(max(min_on, float(np.quantile(allr, q))) for q in np.linspace(0.70, 0.999, 60)))
    tried = []
    best = None
    for on in grid:
        for k, n in ((1, 1), (2, 2), (2, 3), (3, 3), (3, 5), (4, 6)):
            for clear_after in (10, 30):
                rule = {"on": on, "k": k, "n": n, "off": on * 0.5, "clear_after": clear_after}
                m = rule_metrics(eps, risks, rule)
                tried.append((rule, m))
                if m["fa_per_1000"] > max_fa or m["alarm_time_share_clean"] > max_on_share:
                    continue
                key = (round(m["recall"], 3), m["lead_p10"], m["lead_median"])
                if best is None or key > best[0]:
                    best = (key, rule, m)
    if best is None:
        rule, m = min(tried, key=lambda x: x[1]["fa_per_1000"])
        return rule, m, tried
    return best[1], best[2], tried


def with_risk_section(text: str, section: dict) -> str:
    """The manifest text with its `risk` value replaced by `section`, or `section` appended as the last
    key when there is none; every other byte stays as the trainer wrote it. The trainer writes its
    keys sorted, so a manifest it rewrote (`refine`, `calibrate`) has `risk` before `sampling` and
    `schemaVersion`: only the value's own span is replaced, never the text after it."""
    risk = json.dumps(section, indent=2).replace("\n", "\n  ")
    before = json.loads(text)
    if not isinstance(before, dict):
        raise ValueError("manifest.json must be one JSON object")
    marker = '\n  "risk" : '
    if "risk" in before and marker in text:
        start = text.index(marker) + len(marker)
        _, end = json.JSONDecoder().raw_decode(text, start)
        out = text[:start] + risk + text[end:]
    else:
        body = text.rstrip()
        out = body[:-1].rstrip() + ",\n  \"risk\" : " + risk + "\n}\n"
    after = json.loads(out)
    lost = set(before) - set(after)
    if lost or after["risk"] != json.loads(json.dumps(section)):
        raise ValueError(f"writing the risk section would lose {sorted(lost)}: manifest left unchanged")
    return out


def cmd_fit(args) -> int:
    episodes = []
    for path in args.runs:
        _, eps = load_run(path)
        episodes += eps
    fit_eps = episodes[0::2]
    cal_eps = episodes[1::2]
    rate = args.trend_rate
    bad = [k for k in args.stateless_features.split(",") if k not in STATELESS]
    if bad:
        raise SystemExit(f"--stateless-features: {bad} need a stream or are unknown (stateless: {STATELESS})")
    stateless = fit_model(fit_eps, cal_eps, args.stateless_features.split(","), rate, args.horizon)
    stream = fit_model(fit_eps, cal_eps, args.stream_features.split(","), rate, args.horizon)
    # AUROC and alarm rule on the calibration half (the fit half would flatter them)
    report = {}
    for name, model in (("stateless", stateless), ("stream", stream)):
        xs, ys = [], []
        for e in cal_eps:
            f = stream_features(e["steps"]["q"], e["steps"]["energy"], rate)
            y, known = labels(e, args.horizon)
            xs.append(predict(model, f)[known])
            ys.append(y[known])
        report[f"auroc_{name}_calibration_half"] = auroc(np.concatenate(xs), np.concatenate(ys))
    # the rule is chosen on every training episode: false alarms are rare events and the
    # calibration half alone holds too few undisturbed steps to bound them
    risks = [predict(stream, stream_features(e["steps"]["q"], e["steps"]["energy"], rate)) for e in episodes]
    rule, m, _ = choose_rule(episodes, risks, args.max_false_alarms, args.max_alarm_share, args.min_on)
    report["alarm_rule_training"] = m
    section = OrderedDict(horizon=args.horizon, trend_rate=rate, stateless=stateless, stream=stream, alarm=rule)
    print(json.dumps(report, indent=1))
    print(json.dumps(section["alarm"]))
    if args.manifest:
        p = Path(args.manifest)
        if args.write:
            write_atomic(p, with_risk_section(p.read_text(), section))
            print(f"wrote the risk section into {p}")
    if args.out:
        write_atomic(Path(args.out), json.dumps({"risk": section, "report": report, "runs": args.runs}, indent=1) + "\n")
    return 0


def rescore_episode(e: dict, section: dict) -> dict:
    """One recorded episode with the risk and alarm a server with `section` would have served on
    its stream (``x_risk``, ``x_alarm``) and the stateless risk (``x_risk_stateless``), computed
    from the recorded q (and E_min if the section uses it). The recorded served values are kept
    as ``x_risk_recorded`` and ``x_alarm_recorded``."""
    s = dict(e["steps"])
    f = stream_features(s["q"], s["energy"], section["trend_rate"])
    risk = predict(section["stream"], f)
    for k in ("risk", "alarm"):
        if "x_" + k in s:
            s["x_" + k + "_recorded"] = s["x_" + k]
    s["x_risk"] = risk.astype(np.float64)
    s["x_alarm"] = alarm_states(risk, section["alarm"]).astype(np.float64)
    s["x_risk_stateless"] = predict(section["stateless"], f).astype(np.float64)
    out = dict(e)
    out["steps"] = s
    return out


def calibration_table(episodes, horizon, key="x_risk", edges=(0, 0.01, 0.05, 0.2, 0.5, 0.8, 1.0000001)) -> dict:
    rs, ys = [], []
    for e in episodes:
        y, known = labels(e, horizon)
        rs.append(np.asarray(e["steps"][key], dtype=np.float64)[known])
        ys.append(y[known])
    r, y = np.concatenate(rs), np.concatenate(ys).astype(np.float64)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (r >= lo) & (r < hi)
        bins.append({"lo": lo, "hi": min(hi, 1.0), "steps": int(sel.sum()),
                     "mean_risk": float(r[sel].mean()) if sel.any() else None,
                     "share_falling": float(y[sel].mean()) if sel.any() else None})
    return {"brier": float(np.mean((r - y) ** 2)), "base_rate": float(y.mean()), "steps": int(len(r)), "bins": bins}


def cmd_rescore(args) -> int:
    """Score recorded runs with the manifest's risk section instead of the risk they were served with."""
    section = json.loads(Path(args.manifest).read_text())["risk"]
    episodes, summaries = [], []
    for path in args.runs:
        s, eps = load_run(path)
        summaries.append(s)
        episodes += [rescore_episode(e, section) for e in eps]
    res = evaluate(episodes, args)
    print_table(res)
    cal = calibration_table(episodes, section["horizon"])
    print(json.dumps({k: v for k, v in cal.items() if k != "bins"}))
    for b in cal["bins"]:
        print(b)
    if args.plot:
        plot(res, episodes, args.plot, args.title or f"{summaries[0]['model']}: alarms under disturbances (re-scored)")
    if args.out:
        write_atomic(Path(args.out), json.dumps({
            "rescored": True, "manifest": args.manifest, "risk": section, "runs": args.runs,
            "note": args.note, "calibration": cal, "metrics": res}, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.risk", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("runs", nargs="+", help="alarms run JSON files (training seeds)")
    f.add_argument("--horizon", type=int, default=20)
    f.add_argument("--trend-rate", type=float, default=0.2)
    f.add_argument("--stateless-features", default=",".join(STATELESS),
                   help="features of the model for requests without a stream (q, energy)")
    f.add_argument("--stream-features", default=",".join(STREAM))
    f.add_argument("--max-false-alarms", type=float, default=1.0, help="per 1000 undisturbed steps, when choosing the rule")
    f.add_argument("--max-alarm-share", type=float, default=0.01, help="most share of undisturbed steps in alarm")
    f.add_argument("--min-on", type=float, default=0.01, help="lowest risk threshold the alarm rule may use")
    f.add_argument("--manifest", help="manifest.json to put the risk section into")
    f.add_argument("--write", action="store_true", help="write the manifest (else only print)")
    f.add_argument("--out", help="fit report JSON")
    r = sub.add_parser("rescore", help="score recorded alarm runs with a manifest's risk section (offline mirror of the server)")
    r.add_argument("runs", nargs="+", help="alarms run JSON files (pooled)")
    r.add_argument("--manifest", required=True, help="manifest.json whose risk section to serve")
    r.add_argument("--out", help="report JSON")
    r.add_argument("--title")
    r.add_argument("--note", help="free text stored in the report")
    add_metric_args(r)
    r.set_defaults(signals=["1-confidence", "-q", "risk", "risk_stateless"])
    args = ap.parse_args(argv)
    return cmd_fit(args) if args.cmd == "fit" else cmd_rescore(args)


if __name__ == "__main__":
    sys.exit(main())
