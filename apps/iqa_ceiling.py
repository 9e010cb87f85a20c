"""How high can a scorer's SRCC go on the synthetic quality benchmark? A PNG for one metric.

    python -m apps.iqa_ceiling --scores_csv runs/iqa/benchmark/scores.csv \
        --predictions runs/iqa/models/full/eval_test/predictions.csv --out docs/cas_iqa_ceiling.png

Curve: the SRCC with the MOS of a scorer that reads every severity above a threshold exactly,
cannot tell the cases at or below it apart and never ties (``severity_ceiling``), against that
threshold. Lines: the severities themselves with their ties (the usual ceiling), the model's
SRCC with its 95 % bootstrap interval (from ``predictions.csv`` of the bundle's evaluation), and
an optional target.
"""

from __future__ import annotations

import csv
from typing import Optional, Sequence

import fire
import numpy as np

THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)


def ceiling_curve(scores_csv: str, predictions: str, metric: str = "guidewire", split: str = "test", thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """Severity, MOS and prediction of the cases of ``predictions`` (``split`` rows of
    ``scores_csv``) -> the ceilings and the model's SRCC with its interval."""
    from angiokit.data.errors import AngioDataError
    from angiokit.data.quality import read_benchmark_labels
    from angiokit.metrics.correlation import correlation, correlation_interval, severity_ceiling

    with open(predictions, newline="") as f:
        reader = csv.DictReader(f)
        if f"{metric}_pred" not in (reader.fieldnames or []):
            raise AngioDataError(predictions, f"no '{metric}_pred' column: expected the predictions.csv of the bundle's evaluation")
        predicted = {r["case"]: float(r[f"{metric}_pred"]) for r in reader}
    rows = [r for r in read_benchmark_labels(scores_csv, split) if r["case"] in predicted]
    if len(rows) < 3:
        raise AngioDataError(predictions, f"fewer than 3 of its cases are in the {split} split of {scores_csv}")
    severity = np.array([r[f"{metric}_severity"] for r in rows])
    mos = np.array([r[f"{metric}_mos"] for r in rows])
    pred = np.array([predicted[r["case"]] for r in rows])
    return {
        "n": len(rows),
        "thresholds": list(thresholds),
        "never_tied": [severity_ceiling(severity, mos, t) for t in thresholds],
        "ties_kept": severity_ceiling(severity, mos),
        "model": correlation("srcc", pred, mos),
        "model_interval": list(correlation_interval("srcc", pred, mos)),
    }


def main(scores_csv: str, predictions: str, out: str, metric: str = "guidewire", split: str = "test", target: Optional[float] = 0.9):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from angiokit.data.writers import atomic_path

    c = ceiling_curve(scores_csv, predictions, metric, split)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.plot(c["thresholds"], c["never_tied"], "o-", label="severity read exactly above the threshold, never tied")
    ax.axhline(c["ties_kept"], color="grey", ls=":", label=f"severity itself, ties kept ({c['ties_kept']:.3f})")
    low, high = c["model_interval"]
    ax.axhspan(low, high, color="tab:green", alpha=0.2)
    ax.axhline(c["model"], color="tab:green", label=f"model {c['model']:.3f} [{low:.3f}, {high:.3f}]")
    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", label=f"target {target}")
    ax.set(xlabel="largest severity a scorer cannot tell from none", ylabel=f"{metric} SRCC with the MOS", title=f"{metric}: what the labels allow ({c['n']} {split} cases)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(c)
    return out


if __name__ == "__main__":
    fire.Fire(main)
