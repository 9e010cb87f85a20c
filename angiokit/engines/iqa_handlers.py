"""Handlers of the CAS-IQA bundle: the evaluation report (correlations, per-image CSV, scatter
plots) and the per-image JSON of inference."""

from __future__ import annotations

import json
import os
from typing import List, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..data.quality import LEVELS, METRICS
from ..data.writers import atomic_path, write_csv
from ..metrics.correlation import KINDS, correlation, correlation_interval, predicted_scores


def _probabilities(pred: torch.Tensor):
    return pred.float().softmax(-1) if pred.ndim == 3 else None


class IQAReportWriter:
    """After an evaluation run: ``predictions.csv`` (case, predicted score and MOS per metric),
    ``correlations.json`` (SRCC / PLCC / KRCC per metric and their mean, and per metric the 95 %
    case-bootstrap interval of each, ``confidence_interval``; ``resamples`` 0 leaves it out) and
    ``scatter.png`` (predicted vs MOS, one panel per metric)."""

    def __init__(self, output_dir: str, metrics: Sequence[str] = METRICS, title: str = "CAS-IQA", resamples: int = 1000):
        self.output_dir, self.metrics, self.title, self.resamples = output_dir, list(metrics), title, int(resamples)
        self.rows: List[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        out = engine.state.output
        scores = predicted_scores(out["pred"]).cpu().numpy()
        mos = out["label"][..., -1].float().cpu().numpy()
        cases = engine.state.batch.get("case", [f"{engine.state.iteration}_{i}" for i in range(len(scores))])
        for case, s, m in zip(cases, scores, mos):
            self.rows.append({"case": case, **{f"{k}_pred": float(v) for k, v in zip(self.metrics, s)}, **{f"{k}_mos": float(v) for k, v in zip(self.metrics, m)}})

    def _columns(self, m: str):
        return np.array([r[f"{m}_pred"] for r in self.rows]), np.array([r[f"{m}_mos"] for r in self.rows])

    def correlations(self) -> dict:
        result = {}
        for kind in KINDS:
            per = {m: correlation(kind, *self._columns(m)) for m in self.metrics}
            result[kind] = {**per, "mean": float(np.mean(list(per.values())))}
        if self.resamples > 0:
            interval = {"level": 0.95, "resamples": self.resamples}
            for kind in KINDS:
                interval[kind] = {m: list(correlation_interval(kind, *self._columns(m), resamples=self.resamples)) for m in self.metrics}
            result["confidence_interval"] = interval
        return result

    def write(self, engine: Engine) -> dict:
        os.makedirs(self.output_dir, exist_ok=True)
        write_csv(os.path.join(self.output_dir, "predictions.csv"), self.rows)
        result = {"n": len(self.rows), **self.correlations()}
        with atomic_path(os.path.join(self.output_dir, "correlations.json")) as tmp:
            json.dump(result, open(tmp, "w"), indent=2)
        self.scatter(result)
        return result

    def scatter(self, result: dict) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.metrics), figsize=(3.4 * len(self.metrics), 3.2))
        for ax, m in zip(np.atleast_1d(axes), self.metrics):
            ax.scatter([r[f"{m}_mos"] for r in self.rows], [r[f"{m}_pred"] for r in self.rows], s=8, alpha=0.6)
            ax.plot([1, 5], [1, 5], "k--", lw=0.8)
            low, high = result.get("confidence_interval", {}).get("srcc", {}).get(m, (None, None))
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None and np.isfinite(low) else ""
            ax.set(xlim=(0.8, 5.2), ylim=(0.8, 5.2), xlabel="MOS (raters)", ylabel="predicted")
            ax.set_title(f"{m}: SRCC {result['srcc'][m]:.3f}{interval}", fontsize=9)
        fig.suptitle(self.title, fontsize=9)
        fig.tight_layout()
        path = os.path.join(self.output_dir, "scatter.png")
        tmp = path + ".tmp.png"
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        os.replace(tmp, path)
        return path


class IQAJsonWriter:
    """Inference: ``<image stem>_quality.json`` per scored image with the three scores, the level
    probabilities and the auxiliary images used."""

    def __init__(self, output_dir: str, metrics: Sequence[str] = METRICS):
        self.output_dir, self.metrics = output_dir, list(metrics)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        out, batch = engine.state.output, engine.state.batch
        for i, doc in enumerate(describe(out["pred"], batch, self.metrics)):
            stem = os.path.splitext(os.path.basename(doc["image"]))[0]
            with atomic_path(os.path.join(self.output_dir, f"{stem}_quality.json")) as tmp:
                json.dump(doc, open(tmp, "w"), indent=2)


def describe(pred: torch.Tensor, batch: dict, metrics: Sequence[str]) -> List[dict]:
    """Per image: {"image", "scores", "levels", "probabilities", "auxiliary"}."""
    scores = predicted_scores(pred).cpu().numpy()
    probs = _probabilities(pred)
    docs = []
    for i in range(len(scores)):
        meta = getattr(batch["image"], "meta", {}) or {}
        names = meta.get("filename_or_obj", [""] * len(scores))
        aux = {}
        for key in ("fluoro", "reference"):
            if bool(batch[f"{key}_available"][i]):
                m = getattr(batch[key], "meta", {}) or {}
                aux[key] = (m.get("filename_or_obj") or [""] * len(scores))[i]
        doc = {"image": names[i], "scores": {m: round(float(s), 3) for m, s in zip(metrics, scores[i])}, "auxiliary": aux}
        if probs is not None:
            doc["probabilities"] = {m: {lvl: round(float(p), 4) for lvl, p in zip(LEVELS, probs[i, j])} for j, m in enumerate(metrics)}
            doc["levels"] = {m: LEVELS[int(np.clip(round(float(s)) - 1, 0, 4))] for m, s in zip(metrics, scores[i])}
        docs.append(doc)
    return docs
