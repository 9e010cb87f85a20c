"""The experiment commands of docs/results.md in their --quick forms (plumbing: every step runs,
the report has its rows)."""

from __future__ import annotations

import json
import subprocess
import sys

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
