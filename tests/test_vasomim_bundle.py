"""The real VasoMIM bundle configs on tiny CPU runs (sizes and epochs overridden only)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.networks.nets import ViT

from angiokit.data import to_uint, write_png
from angiokit.networks import load_encoder

from .bundle_utils import config, verify_metadata, workflow
from .conftest import REPO, free_port

TINY = {
    "image_size": 32,
    "batch_size": 4,
    "synthetic_length": 8,
    "num_workers": 0,
    "preset": "vit_s16",
    "warmup_epochs": 1,
    "base_lr": 0.002,
    "image_interval": 1,
    "checkpoint_interval": 1,
    "network_def#num_layers": 2,
    "network_def#decoder_num_layers": 1,
}


def _train(root, epochs, collect=None, **extra):
    wf = workflow("vasomim_pretrain", ["train"], "train", bundle_root=str(root), max_epochs=epochs, **{**TINY, **extra})
    wf.initialize()
    assert wf.check_properties() == []
    trainer = wf.trainer
    if collect is not None:
        from ignite.engine import Events

        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: collect.append({k: float(e.state.output[k]) for k in ("loss", "loss_reconstruction", "loss_consistency", "alpha")} | {"epoch": e.state.epoch}))
    wf.run()
    wf.finalize()
    return trainer


def test_metadata_passes_monai_schema():
    verify_metadata("vasomim_pretrain")  # raises on a field the schema rejects


def test_tiny_training_learns_schedules_alpha_and_writes_everything(tmp_path):
    seen = []
    _train(tmp_path, 6, seen)
    first = np.mean([s["loss_reconstruction"] for s in seen if s["epoch"] == 1])
    last = np.mean([s["loss_reconstruction"] for s in seen if s["epoch"] == 6])
    # norm_pix_loss (the default): unit-variance targets, an untrained decoder scores about 1.3
    # and a zero prediction 1.0; twelve tiny steps already bring it down
    assert last < 0.95 * first, (first, last)
    alphas = [next(s["alpha"] for s in seen if s["epoch"] == e) for e in range(1, 7)]
    assert alphas[0] == 0.0 and alphas[-1] == pytest.approx(0.5) and np.all(np.diff(alphas) > 0)
    assert all(s["loss_consistency"] > 0 for s in seen)
    models = tmp_path / "models"
    assert (models / "model.pt").exists() and (models / "checkpoint_epoch=6.pt").exists()
    assert sorted(p.name for p in (tmp_path / "eval").glob("reconstruction_epoch*.png"))[-1] == "reconstruction_epoch0006.png"
    assert list((tmp_path / "eval").glob("events.out.tfevents*"))
    exported = torch.load(models / "encoder.pt", weights_only=True)
    c = exported["config"]
    vit = ViT(in_channels=1, img_size=c["img_size"], patch_size=c["patch_size"], hidden_size=c["hidden_size"], mlp_dim=c["mlp_dim"], num_layers=c["num_layers"], num_heads=c["num_heads"], qkv_bias=c["qkv_bias"], spatial_dims=2)
    assert load_encoder(vit, exported["encoder"]) == ([], [])


def test_plain_mae_flag_turns_guidance_and_consistency_off(tmp_path):
    seen = []
    _train(tmp_path, 2, seen, plain_mae=True)
    assert all(s["alpha"] == 0.0 and s["loss_consistency"] == 0.0 for s in seen)


@pytest.mark.parametrize("flags,guided,consistency", [({"anatomical_consistency_weight": 0}, True, False), ({"guided": False}, False, True)])
def test_the_ablation_flags_of_the_readme(tmp_path, flags, guided, consistency):
    # (--plain_mae true and the defaults are the runs above)
    seen = []
    trainer = _train(tmp_path, 2, seen, **flags)
    assert trainer.objective.guided is guided and (trainer.objective.consistency_weight > 0) is consistency
    assert all((s["loss_consistency"] > 0) is consistency for s in seen)
    assert (seen[-1]["alpha"] > 0) is guided


def test_resume_continues_at_the_next_epoch(tmp_path):
    _train(tmp_path, 2)
    seen = []
    trainer = _train(tmp_path, 3, seen, resume_from=str(tmp_path / "models" / "checkpoint_epoch=2.pt"))
    assert {s["epoch"] for s in seen} == {3} and trainer.state.epoch == 3


def test_inference_writes_reconstruction_grids_for_given_images(tmp_path, small_frames):
    _train(tmp_path, 1)
    frames = tmp_path / "frames"
    for i, s in enumerate(small_frames[:2]):
        write_png(frames / f"frame{i}.png", to_uint(s.image[0], 8))
    wf = workflow("vasomim_pretrain", ["inference"], "infer", bundle_root=str(tmp_path), dataset_dir=str(frames), image_size=32, preset="vit_s16", **{"network_def#num_layers": 2, "network_def#decoder_num_layers": 1})
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    from PIL import Image

    out = sorted((tmp_path / "eval" / "reconstructions").glob("*.png"))
    assert [p.name for p in out] == ["frame0_reconstruction.png", "frame1_reconstruction.png"]
    assert Image.open(out[0]).size[0] > 2 * Image.open(out[0]).size[1]  # four panels side by side
    metrics = json.loads((tmp_path / "eval" / "reconstructions" / "reconstruction_metrics.json").read_text())
    assert metrics["n"] == 2 and [f["frame"] for f in metrics["frames"]] == ["frame0.png", "frame1.png"]
    assert metrics["masking"] == {"guided": True, "alpha": 0.5, "mask_ratio": 0.5} and metrics["norm_pix_loss"] is True  # trained with the default
    for kind in ("model", "mean_predictor", "patch_mean_oracle"):
        assert metrics[f"{kind}_masked_mse"]["n"] == 2 and metrics[f"{kind}_masked_mse"]["mean"] > 0 and metrics[f"{kind}_masked_mse"]["sd"] >= 0
    assert metrics["patch_mean_oracle_masked_mse"]["mean"] < metrics["mean_predictor_masked_mse"]["mean"]  # a patch's own mean beats the frame's


def test_two_process_gloo_ddp_run_finishes(tmp_path):
    overrides = sum(([f"--{k}", str(v)] for k, v in TINY.items()), [])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "monai.bundle", "run",
           "--config_file", json.dumps(config("vasomim_pretrain", "train", "multi_gpu_train")), "--bundle_root", str(tmp_path), "--max_epochs", "2", "--log_interval", "1", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").exists()
    assert "Epoch: 2/2" in proc.stdout + proc.stderr
