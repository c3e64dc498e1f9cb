"""Plot `flowgate bench check` reports: AUROC against the check's cost, one panel per comparison.

    python scripts/plot_check.py runs/check/hopper-medium.json [more.json ...] --out docs/img/check-sweep.png \
        [--mark 2:0:128]

Each point is one sampler setting (N samples, T Langevin steps, P bank proposals); triangles are
nearest-source proposals (P written Pn, e.g. 1:0:16n), circles random draws. Reports of the same
model share a colour. `--before N:T:P` is ringed, `--mark N:T:P` settings are starred. The x axis is
MFLOP per observation (from the networks, exact; staged settings: what held-out rows cost); the
dashed line is 1.5x the policy + critic.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def key(s):
    return (s["samples"], s["langevin_steps"], s["proposals"], bool(s.get("nearest", False)))


def parse(text):
    n, t, p = text.split(":")
    return (int(n), int(t), int(p.rstrip("n")), p.endswith("n"))


def label(k):
    return "N%d T%d P%d%s" % (k[0], k[1], k[2], " nearest" if k[3] else "")


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
        near = " nearest" if s.get("nearest") else ""
        print(f"| {s['samples']} | {s['langevin_steps']} | {s['proposals']}{near}{tag} | {r['mflop_per_observation']:.1f} | "
              f"{r['mflop_per_observation'] / policy:.2f} | {r['auroc_random_actions']:.3f} | {r['auroc_noisy_states']:.3f} | "
              f"{other} | {100 * r['reliable_rate_fresh']:.1f} % |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mark", action="append", default=[], help="N:T:P (or N:T:Pn) setting to star (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="also print each report as a markdown table")
    ap.add_argument("--before", default="8:20:128", help="N:T:P of the check shipped before, tagged in the tables")
    args = ap.parse_args()
    before = parse(args.before)
    if args.markdown:
        for path in args.reports:
            print_markdown(json.load(open(path)), before)
    marks = {parse(m) for m in args.mark}
    colors = {}
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
            color = colors.setdefault(rep["model"], "C%d" % len(colors))
            for near, marker in ((False, "o"), (True, "^")):
                sel = [p for p in pts if p[2][3] == near]
                if sel:
                    name = rep["model"] + (" (nearest)" if near else "")
                    ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=18, marker=marker, color=color, alpha=0.8,
                               label=name if ax is axes[0] else None)
            for x, y, k in pts:
                if k == before:
                    ax.scatter([x], [y], s=120, facecolors="none", edgecolors=color, linewidths=1.5)
                if k in marks:
                    ax.scatter([x], [y], s=140, marker="*", color=color, edgecolors="black", linewidths=0.6)
                    ax.annotate(label(k), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
            ax.axvline(1.5 * policy, color=color, linestyle="--", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("check MFLOP per observation")
            ax.set_title(title, fontsize=10)
            ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("AUROC (E_min, outliers higher)")
    axes[-1].set_ylabel("share")
    axes[-1].axhline(0.95, color="gray", linewidth=0.8)
    handles, names = axes[0].get_legend_handles_labels()
    seen = {}
    for h, n in zip(handles, names):
        seen.setdefault(n, h)
    axes[0].legend(seen.values(), seen.keys(), fontsize=7, loc="lower right")
    fig.suptitle("Energy check: signal vs cost (circles: random bank draws, triangles: nearest-source; ring: "
                 + label(before) + "; stars: --mark; dashed: 1.5x policy + critic)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
