"""The main job, ``python -m apps.demo --quick``, run as users run it (a subprocess, the README's
command), with a real labelled set and unlabeled real frames when ../shared/data has them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from apps.demo_report import epoch_losses, validation_metrics

from .conftest import REPO, SHARED_DATA


def test_quick_demo_reaches_a_report_with_every_section_and_resumes(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "apps.demo", "--quick", "--out", str(out)]
    xcad, frames = SHARED_DATA / "xcad_samples", SHARED_DATA / "xa_cine_kragujevac" / "images"
    real = xcad.exists() and frames.exists()
    if real:
        cmd += ["--labeled", str(xcad), "--unlabeled", str(frames)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"=== \[2/6\] pretrain", run.stdout) and "pretrain_vasomim: epoch 2/2" in run.stdout  # progress per stage
    report = (out / "report.md").read_text()
    for section in ("## 1. VasoMIM pre-training", "## 2. Vessel segmentation", "## 3. CAS-IQA", "## 4. Loss curves"):
        assert section in report
    for figure in re.findall(r"\]\((figures/[^)]+)\)", report):
        assert (out / figure).stat().st_size > 1000, figure
    assert {"figures/reconstruction.png", "figures/segmentation_synth.png", "figures/iqa_scatter.png", "figures/loss_curves.png"} <= set(re.findall(r"\]\((figures/[^)]+)\)", report))
    rows = [line for line in report.splitlines() if line.startswith("| synthetic test split") or line.startswith("| real labelled test split")]
    assert len(rows) == (2 if real else 1)
    for row in rows:
        numbers = [float(x) for x in row.split("|")[2:7]]
        assert numbers[0] >= 1 and all(0.0 <= v <= 1.0 for v in numbers[1:])
    if real:
        assert "| real labelled test split | 5 |" in report  # the fixed XCAD test split

    again = subprocess.run([sys.executable, "-m", "apps.demo", "--quick", "--out", str(out)] + cmd[6:], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[done]" not in again.stdout and again.stdout.count("[skip]") >= 6  # every stage resumed

    other = subprocess.run([sys.executable, "-m", "apps.demo", "--quick", "--out", str(out), "--pretrain_epochs", "3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "--fresh" in other.stderr  # never mixes runs of other sizes


def test_loss_and_metric_lines_of_monai_logs_are_read(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "2026-11-23 16:45:50,554 - INFO - Epoch: 1/2, Iter: 1/2 -- train_loss: 1.0 \n"
        "2026-11-23 16:45:50,554 - INFO - Epoch: 1/2, Iter: 2/2 -- train_loss: 0.5 \n"
        "2026-11-23 17:49:44,395 - INFO - Epoch[1] Metrics -- val_cldice: 0.6416 val_mean_dice: 0.5736\n"
        "2026-11-23 16:45:50,554 - INFO - Epoch: 2/2, Iter: 1/2 -- train_loss: 0.25 \n"
    )
    assert epoch_losses(str(log)) == {1: 0.75, 2: 0.25}
    assert validation_metrics(str(log)) == {"val_cldice": {1: 0.6416}, "val_mean_dice": {1: 0.5736}}


def test_demo_refuses_a_missing_folder_naming_it(tmp_path):
    from apps.demo import main

    with pytest.raises(FileNotFoundError, match="no_such_dir.*--labeled"):
        main(out=str(tmp_path / "d"), quick=True, labeled=str(tmp_path / "no_such_dir"))
    with pytest.raises(ValueError, match="unknown option"):
        main(out=str(tmp_path / "d"), quick=True, epochz=3)
