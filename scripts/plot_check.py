"""Plot `flowgate bench check` reports: AUROC against the check's cost, one panel per comparison.

    python scripts/plot_check.py runs/check/hopper-medium.json [more.json ...] --out docs/img/check-sweep.png \
        [--mark 2:0:128]

Each point is one sampler setting (N samples, T Langevin steps, P bank proposals); the shipped
setting of each report is ringed, `--mark N:T:P` settings are starred. The x axis is MFLOP per
observation (from the networks, exact); the dashed line is 1.5x the policy + critic.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def key(s):
    return (s["samples"], s["langevin_steps"], s["proposals"])


def print_markdown(rep, before):
    policy = rep["policy_mflop_per_observation"]
    shipped = key(rep["shipped"])
    print(f"\n{rep['model']} (policy + critic {policy:.1f} MFLOP per observation; {rep['machine']['summary'] if 'summary' in rep['machine'] else rep['machine']['cpu_model']})\n")
    print("| N | T | P | MFLOP | × policy | AUROC random actions | AUROC noisy states | AUROC other data | fresh held-out reliable |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rep["rows"]:
        s = r["setting"]
        other = "–" if r.get("auroc_other_dataset") is None else f"{r['auroc_other_dataset']:.3f}"
        tag = " (before)" if key(s) == before else ""
        print(f"| {s['samples']} | {s['langevin_steps']} | {s['proposals']}{tag} | {r['mflop_per_observation']:.1f} | "
              f"{r['mflop_per_observation'] / policy:.2f} | {r['auroc_random_actions']:.3f} | {r['auroc_noisy_states']:.3f} | "
              f"{other} | {100 * r['reliable_rate_fresh']:.1f} % |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mark", action="append", default=[], help="N:T:P setting to star (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="also print each report as a markdown table")
    ap.add_argument("--before", default="8:20:128", help="N:T:P of the check shipped before, tagged in the tables")
    args = ap.parse_args()
    before = tuple(int(v) for v in args.before.split(":"))
    if args.markdown:
        for path in args.reports:
            print_markdown(json.load(open(path)), before)
    marks = {tuple(int(v) for v in m.split(":")) for m in args.mark}
    panels = [("auroc_random_actions", "random actions"), ("auroc_noisy_states", "noisy states"),
              ("auroc_other_dataset", "other dataset (random policy)"), ("reliable_rate_fresh", "fresh held-out judged reliable")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for path in args.reports:
        rep = json.load(open(path))
        rows = rep["rows"]
        shipped = key(rep["shipped"])
        policy = rep["policy_mflop_per_observation"]
        for ax, (field, title) in zip(axes, panels):
            pts = [(r["mflop_per_observation"], r[field], key(r["setting"])) for r in rows if r.get(field) is not None]
            if not pts:
                continue
            line = ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, label=rep["model"], alpha=0.8)
            color = line.get_facecolor()[0]
            for x, y, k in pts:
                if k == before:
                    ax.scatter([x], [y], s=120, facecolors="none", edgecolors=color, linewidths=1.5)
                if k in marks:
                    ax.scatter([x], [y], s=140, marker="*", color=color, edgecolors="black", linewidths=0.6)
                    ax.annotate("N%d T%d P%d" % k, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
            ax.axvline(1.5 * policy, color=color, linestyle="--", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("check MFLOP per observation")
            ax.set_title(title, fontsize=10)
            ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("AUROC (E_min, outliers higher)")
    axes[-1].set_ylabel("share")
    axes[-1].axhline(0.95, color="gray", linewidth=0.8)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Energy check: signal vs cost (ring: N 8, T 20, P 128, shipped before; stars: P 160 and P 384 without Langevin; dashed: 1.5x policy + critic)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
