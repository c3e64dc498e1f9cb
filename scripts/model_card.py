#!/usr/bin/env python3
"""Write models/NAME/README.md (the model card) from the model's manifest and an evaluation summary
written by `python -m flowgate_client.evaluate`. Numbers are copied from those files, never typed.

    scripts/model_card.py models/hopper-medium --eval models/hopper-medium/eval.json \
        --dataset-cmd "..." --train-cmd "..." --train-time "41 min" --notes notes.md
"""
import argparse
import json
from pathlib import Path


# What reproduces the weights: products on libxsmm and on OpenBLAS agree to float rounding, and
# Adam magnifies the rounding of near-zero gradients, so only the same mode gives the same bytes.
KERNEL_NOTES = {
    "auto": "- products: the default kernels (`FLOWGATE_KERNELS=auto`: libxsmm for small products); the commands "
            "above, at the commit above, reproduce the weights bit for bit with the same `--threads` on the same kind of CPU",
    "openblas": "- products: OpenBLAS (trained before the libxsmm kernels). The code at the commit above reproduces the "
                "weights bit for bit (on the same kind of CPU); later trainers give an equivalent model, not the same bytes: "
                "float rounding differs between versions and kernel modes, and training magnifies it",
}


def fmt(v, nd=1):
    return "–" if v is None else f"{v:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--eval", required=True)
    ap.add_argument("--dataset-cmd", required=True)
    ap.add_argument("--train-cmd", required=True)
    ap.add_argument("--train-time", required=True)
    ap.add_argument("--kernels", default="auto", choices=["auto", "openblas"],
                    help="the FLOWGATE_KERNELS mode the model was trained with (default auto)")
    ap.add_argument("--notes", help="markdown file appended as 'Assessment'")
    ap.add_argument("--check-eval", help="evaluation summary measured with the manifest's current energy check, when --eval "
                    "was measured with an earlier one (actions do not depend on the check, so scores carry over)")
    ap.add_argument("--eval-check", help="the energy check --eval was measured with, e.g. 'N 8 x T 20 from P 128'")
    a = ap.parse_args()
    model = Path(a.model)
    m = json.loads((model / "manifest.json").read_text())
    ev = json.loads(Path(a.eval).read_text())
    prov = m["provenance"]
    rel = m.get("reliability")
    energy = m["networks"].get("energy", {}).get("options", {})
    current_check = (f"E_min over {int(energy.get('proposals', 0))} bank proposals"
                     + (f", N = {m['sampling']['samples']} × T = {int(energy['langevinSteps'])} Langevin steps"
                        if energy.get("langevinSteps") else ", no Langevin step")) if energy else None
    cev = json.loads(Path(a.check_eval).read_text()) if a.check_eval else None
    lines = [f"# {m['name']}", "",
             f"A `{m['kind']}` model for **{ev['env']}** (observation {m['observationDim']}-D, action {m['actionDim']}-D), "
             f"trained by `flowgate train` on `{prov['dataset']}`. Served by `flowgate serve {model}`.", "",
             "## Dataset", "", "Regenerate it (seeded, byte-identical):", "", "```bash", a.dataset_cmd, "```", "",
             "## Training", "", "```bash", a.train_cmd, "```", "",
             f"- steps per phase: " + ", ".join(f"{k} {v}" for k, v in sorted(prov["trainingSteps"].items())),
             f"- seed {prov['seed']}, commit `{prov['gitCommit']}`, {prov['date']}, flowgate {prov['flowgateVersion']}",
             f"- wall time on this 2-core machine (shared with other jobs): {a.train_time}",
             KERNEL_NOTES[a.kernels],
             f"- resolved config: `config.json`; training log: `training-log.jsonl`" + (" (curve: `training-curve.png`)" if (model / "training-curve.png").exists() else ""),
             f"- serving defaults: K = {m['sampling']['steps']} flow steps ({m['sampling']['solver']}), M = {m['sampling']['candidates']} candidates"
             + (f"; energy check: {current_check}" if current_check else ""), "",
             "## Scores (measured over the socket)", "",
             f"`python -m flowgate_client.evaluate` served the model with `flowgate serve` and ran {ev['episodes']} pybullet episodes per row "
             f"(env seeds from {ev['seed']}), every action fetched from the server. Normalised score = 100 · (R − random) / (expert − random) with the "
             "reference returns in `clients/python/flowgate_client/references.json`."
             + (f" The unreliable share and latencies in this table were measured with the energy check the model shipped with "
                f"before ({a.eval_check}); the section Reliability has them with the current check." if cev else ""), "",
             "| run | K | return | normalised score | unreliable steps | client latency p50 / p99 (ms) | server compute p50 (µs) |",
             "|---|---|---|---|---|---|---|"]
    thresholds = {m.get("name"): m.get("threshold") for m in ev.get("info", {}).get("models", [])}
    for r in ev["runs"]:
        if r.get("disturbance"):
            continue
        lat = r["latency_ms"]
        t = thresholds.get(r.get("model"))
        checked = t is not None and t == t and abs(t) != float("inf")
        unrel = f"{100 * r['unreliable_share']:.1f} %" if checked else "– (no energy model)"
        comp = r.get("server_compute_us") or {}
        lines.append(f"| {r['label']} | {r.get('steps') or 'default'} | {fmt(r['return_mean'], 0)} ± {fmt(r['return_std'], 0)} | "
                     f"{fmt(r['score_mean'])} ± {fmt(r['score_std'])} | {unrel} | "
                     f"{fmt(lat.get('p50'), 2)} / {fmt(lat.get('p99'), 2)} | {fmt(comp.get('p50'), 0)} |")
    lines += ["", "## Reliability", ""]
    if rel:
        lines += [f"- energy model: MC-ETM (docs/energy-model.md), check: {current_check}; threshold E_min ≤ {rel['threshold']:.4f} at the "
                  f"{100 * rel['quantile']:.0f} % quantile of {rel['heldOutCount']} held-out real transitions (drawn at random "
                  "from the split the energy model never trained on); confidence = share of held-out transitions with E_min at least as high."]
        src = cev or ev
        if cev:
            lines += ["", f"With this check ({cev['episodes']} episodes per row, env seeds from {cev['seed']}; requests are unseeded, so scores "
                      "differ from the table above by chance; latencies measured with other jobs on both cores):", "",
                      "| run | K | normalised score | unreliable steps | client latency p50 / p99 (ms) | server compute p50 (µs) |",
                      "|---|---|---|---|---|---|"]
            for r in cev["runs"]:
                if r.get("disturbance"):
                    continue
                lat, comp = r["latency_ms"], r.get("server_compute_us") or {}
                lines.append(f"| {r['label']} | {r.get('steps') or 'default'} | {fmt(r['score_mean'])} ± {fmt(r['score_std'])} | "
                             f"{100 * r['unreliable_share']:.1f} % | {fmt(lat.get('p50'), 2)} / {fmt(lat.get('p99'), 2)} | {fmt(comp.get('p50'), 0)} |")
        sweep = [r for r in src["runs"] if r.get("disturbance")]
        if sweep:
            lines += ["", "Disturbance sweep (the safety-monitor scenario):", "",
                      "| disturbance | scale | unreliable steps | normalised score |", "|---|---|---|---|"]
            for r in sweep:
                lines.append(f"| {r['disturbance']} | {r['scale']:g} | {100 * r['unreliable_share']:.1f} % | {fmt(r['score_mean'])} |")
    else:
        lines += ["- no energy model: nothing is checked, so every reply carries `reliable: false`."]
    if a.notes:
        lines += ["", "## Assessment", "", Path(a.notes).read_text().strip()]
    (model / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {model / 'README.md'}")


if __name__ == "__main__":
    main()
