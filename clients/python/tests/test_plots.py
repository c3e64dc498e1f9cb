import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# matplotlib's default colour cycle: C0, C1, C2 (the plots draw their series in these).
C0, C1, C2 = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)


def check_png(path, size, colours, min_pixels=30):
    """Decodes the PNG (Pillow, matplotlib's reader) and checks its size in pixels, that it is not
    blank, and that each series colour is drawn (at least `min_pixels` pixels of exactly it)."""
    from PIL import Image
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size, f"{path}: {im.size}, expected {size}"
        rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    assert rgb.std() > 10, f"{path}: nearly uniform image (std {rgb.std():.1f})"
    assert (rgb != 255).any(axis=2).mean() > 0.01, f"{path}: almost nothing drawn on white"
    for c in colours:
        n = int((rgb == c).all(axis=2).sum())
        assert n >= min_pixels, f"{path}: colour #{c[0]:02x}{c[1]:02x}{c[2]:02x} on {n} pixels"


def test_training_plot(tmp_path):
    from flowgate_client import plots
    log = tmp_path / "log.jsonl"
    with open(log, "w") as f:
        for s in range(0, 200, 10):
            f.write(json.dumps({"phase": "behavior", "step": s, "loss": 1.0 / (1 + s), "lr": 1e-3}) + "\n")
            f.write(json.dumps({"phase": "critic", "step": s, "loss": 2.0 / (1 + s), "q_mean": s * 0.1,
                                "note": "text is ignored"}) + "\n")
        f.write('{"phase": "critic", "step": 2')  # truncated last line of a live log
    out = tmp_path / "curve.png"
    assert plots.main(["training", str(log), "--out", str(out)]) == 0
    # fields loss, lr, q_mean: 3 panels of 5 x 3.2 in at 110 dpi; phases behavior (C0) and critic (C1)
    check_png(out, (1650, 352), [C0, C1])


def _report(path, kind, scale, share, lat):
    path.write_text(json.dumps({"disturbance": kind, "disturbance_scale": scale, "unreliable_share": share,
                                "normalized_score_mean": 100 - 50 * share,
                                "latency_ms": {"p50": lat, "p90": 2 * lat, "p99": 3 * lat}}))
    return str(path)


def test_latency_and_reliability_plots(tmp_path):
    from flowgate_client import plots
    reps = [_report(tmp_path / "base.json", None, 0.0, 0.01, 0.2)]
    reps += [_report(tmp_path / f"noise{i}.json", "obs-noise", s, s, 0.3) for i, s in enumerate((0.1, 0.3))]
    reps += [_report(tmp_path / f"push{i}.json", "push", s, s / 100, 0.25) for i, s in enumerate((20, 60))]
    for kind in ("latency", "reliability"):
        out = tmp_path / f"{kind}.png"
        assert plots.main([kind, *reps, "--out", str(out)]) == 0
    # latency: bars p50, p90, p99 (C0, C1, C2), 5 reports -> max(5, 1.3 * 5 + 2) x 4 in at 110 dpi
    check_png(tmp_path / "latency.png", (935, 440), [C0, C1, C2])
    # reliability: curves obs-noise (C0) and push (C1) on two 10 x 4 in panels at 110 dpi
    check_png(tmp_path / "reliability.png", (1100, 440), [C0, C1])


def test_bench_plot(tmp_path):
    from flowgate_client import plots
    rows = [{"concurrency": c, "steps": k, "latency_ms": {"p50": 0.5 * k * c, "p90": k * c, "p99": 2.0 * k * c}}
            for c in (1, 8) for k in (1, 2, 4, 8)]
    rep = tmp_path / "serve.json"
    rep.write_text(json.dumps({"benchmark": "serve", "model": "m v1", "results": rows}))
    out = tmp_path / "serve.png"
    assert plots.main(["bench", str(rep), "--out", str(out)]) == 0
    # concurrency 1 (C0) and 8 (C1), 6 x 4 in at 90 dpi
    check_png(out, (540, 360), [C0, C1])


def test_restarted_phase_keeps_only_its_last_attempt():
    from flowgate_client.plots import last_attempts
    rows = [{"phase": "critic", "step": 1}, {"phase": "qipo", "step": 100}, {"phase": "qipo", "step": 200},
            {"phase": "qipo", "step": 100, "loss": 1}, {"phase": "qipo", "step": 200, "loss": 2}]
    kept = last_attempts(rows)
    assert [r["step"] for r in kept] == [1, 100, 200]
    assert [r.get("loss") for r in kept if r["phase"] == "qipo"] == [1, 2]


def _eval_report(path, scores):
    """A `flowgate eval --json` report with one run per (K, score), and a baseline row (steps None)."""
    runs = [{"label": f"toy-K{k}", "model": "toy", "steps": k, "score_mean": s, "score_std": 10.0, "episodes": 100,
             "falls": 3} for k, s in scores]
    runs.append({"label": "bc", "model": "bc", "steps": None, "score_mean": 50.0, "score_std": 10.0, "episodes": 100,
                 "falls": 9})
    path.write_text(json.dumps({"env": "HopperBulletEnv", "model": "toy", "episodes": 100, "runs": runs}))
    return str(path)


def test_eval_runs_plot(tmp_path):
    script = Path(__file__).resolve().parents[3] / "scripts" / "plot_eval_runs.py"
    a = _eval_report(tmp_path / "a.json", [(1, 90.0), (8, 95.0)])
    b = _eval_report(tmp_path / "b.json", [(1, 99.0), (8, 98.0)])
    b2 = _eval_report(tmp_path / "b2.json", [(2, 97.0)])
    out = tmp_path / "runs.png"
    subprocess.run([sys.executable, str(script), "--out", str(out), f"constant={a},{a}", f"annealed={b}+{b2},{b}"],
                   check=True)
    # K = 1, 2, 8 (the baseline rows left out) x 2 variants: (2.2 + 1.6 * 6) x 4.2 in at 110 dpi; C0 and C1
    check_png(out, (1298, 462), [C0, C1], min_pixels=20)
    subprocess.run([sys.executable, str(script), "--out", str(out), "--steps", "1", f"constant={a}", f"annealed={b}"],
                   check=True)
    check_png(out, (594, 462), [C0, C1], min_pixels=20)
    bad = subprocess.run([sys.executable, str(script), "--out", str(out), "constant"], capture_output=True, text=True)
    assert bad.returncode != 0 and "is not VARIANT=FILE" in bad.stderr
