"""The experiment commands of docs/results.md in their --quick forms (plumbing: every step runs,
the report has its rows)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO, shared_data


def _run(args, timeout=900):
    run = subprocess.run([sys.executable, "-m"] + args, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def test_compare_quick_runs_pretraining_finetuning_and_evaluation(tmp_path):
    shared_data("xcad_samples")
    out = tmp_path / "compare"
    _run(["apps.compare", "--out", str(out), "--quick", "--tasks", "vessels_synthetic"])
    results = json.loads((out / "results.json").read_text())["results"]["vessels_synthetic"]
    assert set(results) == {"xcad", "synth"}
    for test_set in results.values():
        assert set(test_set) == {"frangi", "unet_scratch", "vit_scratch", "mae", "vasomim"}
        assert all(0.0 <= m["dice"] <= 1.0 and m["n"] >= 1 for m in test_set.values())
    assert "| VasoMIM pre-trained |" in (out / "results.md").read_text()


def test_iqa_benchmark_quick_reports_the_baselines_and_the_model(tmp_path):
    # the full model only: the ablations take the same steps with one more config, and each is
    # trained through the bundle in tests/test_cas_iqa_bundle.py (this suite's time is CI's)
    out = tmp_path / "iqa"
    _run(["apps.iqa_benchmark", "--out", str(out), "--quick", "--models", "full"])
    report = (out / "results.md").read_text()
    for row in ("brisque", "piqe", "blur effect", "ssim", "psnr", "CAS-IQA (S + F + C, MUST)", "ties kept (the ceiling)", "never tied"):
        assert row.lower() in report.lower(), row
    assert "without MUST" not in report
    # its models were trained on this benchmark: asked for another, it refuses to reuse them
    refused = subprocess.run([sys.executable, "-m", "apps.iqa_benchmark", "--out", str(out), "--quick", "--cases", "30"], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode != 0 and "cases 24 (wanted 30)" in refused.stderr


def test_iqa_ceiling_draws_what_the_labels_allow_and_names_a_csv_without_severities(tmp_path):
    import csv

    import numpy as np

    from angiokit.data import AngioDataError
    from apps.iqa_ceiling import ceiling_curve, main

    rng = np.random.default_rng(0)
    severity = np.where(rng.random(300) < 1 / 3, 0.0, rng.random(300))
    mos = np.clip(5 - 4 * severity + 0.3 * rng.normal(size=300), 1, 5)
    scores, predictions = tmp_path / "scores.csv", tmp_path / "predictions.csv"
    with open(scores, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "split"] + [f"{metric}_{k}" for metric in ("guidewire", "branch", "artifact") for k in ("mos", "severity")])
        w.writerows([f"q{i}", "test" if i % 4 else "training"] + [m, s] * 3 for i, (m, s) in enumerate(zip(mos, severity)))
    with open(predictions, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "guidewire_pred"])
        w.writerows([f"q{i}", 5 - 4 * s + 0.5 * rng.normal()] for i, s in enumerate(severity))
    curve = ceiling_curve(str(scores), str(predictions))
    assert curve["n"] == 225  # the test rows only
    assert curve["ties_kept"] > curve["never_tied"][0] > curve["never_tied"][-1]
    low, high = curve["model_interval"]
    assert low < curve["model"] < high < curve["ties_kept"]
    out = tmp_path / "ceiling.png"
    main(str(scores), str(predictions), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(scores, "w", newline="") as f:
        f.write("case,split,guidewire_mos\nq1,test,4\nq2,test,3\nq3,test,2\n")
    with pytest.raises(AngioDataError, match=r"scores.csv: no \['guidewire_severity'.*columns"):
        ceiling_curve(str(scores), str(predictions))
    with pytest.raises(AngioDataError, match="predictions.csv: no 'branch_pred' column"):
        ceiling_curve(str(scores), str(predictions), metric="branch")
