"""The main job, ``python -m apps.demo --quick``, run as users run it (the ``quick_demo`` fixture:
a subprocess, the README's command, with a real labelled set and unlabeled real frames when
../shared/data has them), and what its trained models allow with no size flags: evaluation,
TorchScript export, serving."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from .conftest import REPO

SEG_CONFIGS = REPO / "bundles" / "xa_vessel_seg" / "configs"
SIZE_FLAGS = ("--image_size", "--preset", "network_def#", "--num_classes", "_config")


def test_quick_demo_reaches_a_report_with_every_section_and_resumes(quick_demo):
    out, cmd, real = quick_demo["out"], quick_demo["cmd"], quick_demo["real"]
    assert re.search(r"=== \[2/6\] pretrain", quick_demo["stdout"]) and "pretrain_vasomim: epoch 2/2" in quick_demo["stdout"]  # progress per stage
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

    # the masked-patch errors of the model and of the mean predictor, as the inference config wrote them
    written = json.loads((out / "pretrain" / "eval_heldout" / "reconstruction_metrics.json").read_text())
    for row, key in (("| VasoMIM (this run) |", "model_masked_mse"), ("| mean of the frame's visible patches |", "mean_predictor_masked_mse")):
        line = next(line for line in report.splitlines() if line.startswith(row))
        assert float(line.split("|")[2]) == pytest.approx(written[key]["mean"], abs=1e-4)

    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[done]" not in again.stdout and again.stdout.count("[skip]") >= 6  # every stage resumed

    other = subprocess.run(cmd + ["--pretrain_epochs", "3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "--fresh" in other.stderr  # never mixes runs of other sizes


def test_quick_demo_runs_evaluation_and_inference_with_no_size_flags(quick_demo):
    """Only training names sizes; every other step of the demo gets them from the checkpoint."""
    logs = quick_demo["out"] / "logs"
    for step in ("evaluate_vessel_seg_synth", "evaluate_frangi_synth", "segment_vessel_seg_synth", "evaluate_cas_iqa", "reconstruct_vasomim_heldout"):
        command = (logs / f"{step}.log").read_text().splitlines()[0]
        assert command.startswith("$ ") and "monai.bundle run" in command, step
        assert not [flag for flag in SIZE_FLAGS if flag in command], command


def test_demo_segmenter_evaluates_with_the_bundle_command_and_no_size_flags(quick_demo, tmp_path):
    from apps.experiment import read_segmentation_metrics

    out = quick_demo["out"]
    configs = json.dumps([str(SEG_CONFIGS / "train.json"), str(SEG_CONFIGS / "evaluate.json")])
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs, "--bundle_root", str(out / "segmentation"),
           "--datalist", str(out / "data" / "synth" / "datalist.json"), "--output_dir", str(tmp_path / "eval"), "--num_workers", "0"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ours, demos = read_segmentation_metrics(str(tmp_path / "eval")), read_segmentation_metrics(str(out / "segmentation" / "eval_synth"))
    assert ours["n"] == demos["n"] >= 1 and ours["dice"] == pytest.approx(demos["dice"], abs=1e-6)


def test_demo_segmenter_exports_to_torchscript_with_no_size_flags(quick_demo, tmp_path):
    from angiokit.data.readers import load_frame
    from angiokit.networks import checkpoint_setting, load_network

    out = quick_demo["out"]
    checkpoint = out / "segmentation" / "models" / "model.pt"
    exported = tmp_path / "model.ts"
    cmd = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network", "--bundle_root", str(out / "segmentation"), "--config_file", str(SEG_CONFIGS / "inference.json"),
           "--meta_file", str(SEG_CONFIGS / "metadata.json"), "--key_in_ckpt", "model", "--filepath", str(exported)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    size = checkpoint_setting(str(checkpoint), "image_size")
    frame = torch.from_numpy(load_frame(sorted((out / "data" / "synth" / "images").glob("*.png"))[0])[None])
    frame = torch.nn.functional.interpolate(frame / frame.max(), size=(size, size), mode="area")  # [1, 1, S, S] at its training size
    eager = load_network(str(checkpoint))
    scripted = torch.jit.load(str(exported), map_location="cpu").eval()
    with torch.no_grad():
        expected, got = eager(frame), scripted(frame)
    assert got.shape == expected.shape == (1, 2, size, size)
    assert torch.allclose(got, expected, atol=1e-5)


def test_demo_prints_the_monailabel_line_that_serves_its_models(quick_demo):
    out = quick_demo["out"]
    line = next(line.strip() for line in quick_demo["stdout"].splitlines() if line.strip().startswith("monailabel start_server"))
    assert f"--conf vessel_seg_checkpoint {out / 'segmentation' / 'models' / 'model.pt'}" in line
    assert f"--conf quality_checkpoint {out / 'quality' / 'cas_iqa' / 'models' / 'model.pt'}" in line
    assert "--app monailabel_app" in line and "--conf models vessel_seg,quality" in line and f"--studies {out / 'data' / 'synth' / 'images'}" in line
    assert not [flag for flag in SIZE_FLAGS if flag in line]
    assert line in (out / "report.md").read_text()


def test_loss_curves_are_read_from_tensorboard_event_files(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from apps.experiment import epoch_means, read_scalars

    writer = SummaryWriter(str(tmp_path))
    for step, loss in enumerate([1.0, 0.5, 0.25, 0.25], start=1):  # two iterations an epoch
        writer.add_scalar("train_loss", loss, step)
    writer.add_scalar("val_mean_dice", 0.5736, 1)
    writer.close()
    scalars = read_scalars(str(tmp_path))
    assert epoch_means(scalars["train_loss"], epochs=2) == {1: 0.75, 2: 0.25}
    assert scalars["val_mean_dice"] == {1: pytest.approx(0.5736)}
    assert epoch_means({1: 1.3, 2: 1.2}, epochs=2) == {1: 1.3, 2: 1.2}  # logged per epoch already
    assert read_scalars(str(tmp_path / "none")) == {}


def test_demo_refuses_a_missing_folder_naming_it(tmp_path):
    from apps.demo import main

    with pytest.raises(FileNotFoundError, match="no_such_dir.*--labeled"):
        main(out=str(tmp_path / "d"), quick=True, labeled=str(tmp_path / "no_such_dir"))
    with pytest.raises(ValueError, match="unknown option"):
        main(out=str(tmp_path / "d"), quick=True, epochz=3)
