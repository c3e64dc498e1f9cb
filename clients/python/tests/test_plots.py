import json

PNG = b"\x89PNG\r\n\x1a\n"


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
    assert out.read_bytes()[:8] == PNG


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
        assert out.read_bytes()[:8] == PNG


def test_bench_plot(tmp_path):
    from flowgate_client import plots
    rows = [{"concurrency": c, "steps": k, "latency_ms": {"p50": 0.5 * k * c, "p90": k * c, "p99": 2.0 * k * c}}
            for c in (1, 8) for k in (1, 2, 4, 8)]
    rep = tmp_path / "serve.json"
    rep.write_text(json.dumps({"benchmark": "serve", "model": "m v1", "results": rows}))
    out = tmp_path / "serve.png"
    assert plots.main(["bench", str(rep), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_restarted_phase_keeps_only_its_last_attempt():
    from flowgate_client.plots import last_attempts
    rows = [{"phase": "critic", "step": 1}, {"phase": "qipo", "step": 100}, {"phase": "qipo", "step": 200},
            {"phase": "qipo", "step": 100, "loss": 1}, {"phase": "qipo", "step": 200, "loss": 2}]
    kept = last_attempts(rows)
    assert [r["step"] for r in kept] == [1, 100, 200]
    assert [r.get("loss") for r in kept if r["phase"] == "qipo"] == [1, 2]
