#!/usr/bin/env python3
"""Plot an energy-model evaluation (the JSON written by the energy experiment runner):
ROC curves of E_min and E_min histograms.

    .venv/bin/python scripts/plot_energy.py OUTCOME.json OUT.png [--csv DIR]

--csv also writes roc_<name>.csv (fpr,tpr) and histograms.csv (bin_low,bin_high,<set>...) to DIR.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    args = sys.argv[1:]
    csv_dir = None
    if "--csv" in args:
        i = args.index("--csv")
        csv_dir = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    outcome = json.load(open(args[0]))
    report = outcome["report"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {
        "random_actions": "random actions (AUROC %.3f)" % report["aurocRandomActions"],
        "noisy_states": "noisy states σ=%g (AUROC %.3f)" % (report["stateNoise"], report["aurocNoisyStates"]),
    }
    if report.get("aurocOtherDataset") is not None:
        labels["other_dataset"] = "other dataset (AUROC %.3f)" % report["aurocOtherDataset"]
    for name, pts in sorted(report["roc"].items()):
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], label=labels.get(name, name))
    ax1.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax1.set_xlabel("false positive rate (held-out real flagged)")
    ax1.set_ylabel("true positive rate (OOD flagged)")
    ax1.set_title("ROC of E_min")
    ax1.legend(fontsize=8, loc="lower right")
    lo, hi = report["histogramRange"]
    hists = report["histograms"]
    bins = len(next(iter(hists.values())))
    w = (hi - lo) / bins
    centers = [lo + (k + 0.5) * w for k in range(bins)]
    for name, counts in sorted(hists.items()):
        total = max(sum(counts), 1)
        ax2.step(centers, [c / total for c in counts], where="mid", label=name)
    ax2.axvline(report["calibration"]["threshold"], color="k", ls="--", lw=0.8, label="threshold (q=%.2f)" % report["calibration"]["quantile"])
    ax2.set_xlabel("E_min")
    ax2.set_ylabel("share of rows")
    ax2.set_title("E_min histograms")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args[1], dpi=110)
    if csv_dir:
        os.makedirs(csv_dir, exist_ok=True)
        for name, pts in report["roc"].items():
            with open(os.path.join(csv_dir, "roc_%s.csv" % name), "w") as f:
                f.write("fpr,tpr\n")
                for p in pts:
                    f.write("%.6f,%.6f\n" % (p[0], p[1]))
        names = sorted(hists)
        with open(os.path.join(csv_dir, "histograms.csv"), "w") as f:
            f.write("bin_low,bin_high," + ",".join(names) + "\n")
            for k in range(bins):
                f.write("%.5f,%.5f," % (lo + k * w, lo + (k + 1) * w) + ",".join(str(hists[n][k]) for n in names) + "\n")


if __name__ == "__main__":
    main()
