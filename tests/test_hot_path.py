"""The training hot path of each bundle has no device-to-host sync (issue 26): one short epoch of
the shipped train config (tiny sizes) runs under ``HostSyncDetector`` from each batch in hand to
the end of its iteration's handlers; batch loading and the epoch's end are not watched. And
the detector itself fails on a step that syncs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from angiokit.engines.host_sync import HostSyncDetector, HostSyncError, watch_iterations
from angiokit.metrics import VesselDiceMetric, dice_score

from .bundle_utils import workflow

TINY_VIT = {"preset": "vit_tiny", "image_size": 32, "batch_size": 2, "num_workers": 0, "max_epochs": 1, "device": "$torch.device('cpu')"}


def _toy_step(sync: str, model: torch.nn.Module, x: torch.Tensor):
    """One step on a batch and parameters made before the detector (as a trainer's are)."""
    loss = model(x).pow(2).mean()
    loss.backward()
    if sync == "item":
        return loss.item()
    if sync == "numpy":
        return loss.detach().cpu().numpy()
    if sync == "mask":
        return x[x > 0].sum()
    if sync == "bool":
        return bool(loss > 0)
    return loss.detach() * 2 + torch.arange(2, 4).tolist()[0]  # a host tensor of its own may be read


@pytest.mark.parametrize("sync", ["item", "numpy", "mask", "bool"])
def test_the_detector_fails_on_a_step_that_syncs(sync):
    model, x = torch.nn.Linear(4, 1), torch.randn(8, 4)
    with pytest.raises(HostSyncError, match="device-to-host sync"):
        with HostSyncDetector():
            _toy_step(sync, model, x)
    with HostSyncDetector() as detector:
        _toy_step("none", model, x)
        with detector.allowed():  # a logging interval
            _toy_step(sync, model, x)


def test_the_per_iteration_dice_is_computed_on_the_device_as_the_reference():
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.random((3, 2, 16, 16)) > 0.6).float()
    label = torch.from_numpy(rng.random((3, 2, 16, 16)) > 0.6).float()
    pred[1], label[1] = 0, 0  # empty vs empty: 1
    pred[2, 1] = 0  # nothing found: 0
    with HostSyncDetector():
        scores = VesselDiceMetric()._compute_tensor(pred, label)
    expected = [[dice_score(pred[b, 1], label[b, 1])] for b in range(3)]
    assert torch.allclose(scores, torch.tensor(expected), atol=1e-6)


def _run_watched(bundle: str, **overrides):
    wf = workflow(bundle, ["train"], "train", **overrides)
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    detector = HostSyncDetector()
    watch_iterations(trainer, detector)
    with detector:
        wf.run()
    wf.finalize()
    return trainer


def test_the_vasomim_training_iterations_do_not_sync(tmp_path):
    trainer = _run_watched("vasomim_pretrain", bundle_root=str(tmp_path), synthetic_length=4, warmup_epochs=0, **TINY_VIT)
    assert trainer.state.iteration == 2 and torch.isfinite(trainer.state.output["loss"])


def test_the_segmenter_training_iterations_do_not_sync(tmp_path):
    trainer = _run_watched("xa_vessel_seg", bundle_root=str(tmp_path), synthetic_length=4, synthetic_val_length=2, warmup_epochs=0, **TINY_VIT)
    assert trainer.state.iteration == 2


def test_the_quality_scorer_training_iterations_do_not_sync(tmp_path):
    from angiokit.data.quality import write_quality_benchmark

    write_quality_benchmark(str(tmp_path / "bench"), n=12, size=64, seed=0, progress=False)
    benchmark = str(tmp_path / "bench")
    trainer = _run_watched("cas_iqa", bundle_root=str(tmp_path), dataset_dir=benchmark, warmup_epochs=0, **TINY_VIT)
    assert trainer.state.iteration >= 1


def _parsed(bundle: str, tmp_path, **overrides):
    wf = workflow(bundle, ["train"], "train", bundle_root=str(tmp_path), warmup_epochs=0, **{**TINY_VIT, **overrides})
    wf.initialize()
    return wf.parser


def _bf16_close_to_fp32(loss_of, network):
    """The step's loss and gradients under CPU bf16 autocast: finite, near those in float32."""
    results = []
    for autocast in (False, True):
        network.zero_grad()
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_of()
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in network.parameters() if p.grad is not None])
        results.append((loss.detach().float(), grads.float()))
    (fp32, g32), (bf16, g16) = results
    assert torch.isfinite(bf16) and torch.isfinite(g16).all()
    assert abs(bf16 - fp32) <= 0.05 * abs(fp32) + 1e-3, (float(bf16), float(fp32))
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.95


def test_each_step_runs_under_cpu_bf16_autocast(tmp_path):
    from angiokit.data.quality import write_quality_benchmark
    from angiokit.data.quality_dataset import prepare_quality_batch

    vasomim = _parsed("vasomim_pretrain", tmp_path / "v", synthetic_length=4)
    trainer, network = vasomim.get_parsed_content("train#trainer"), vasomim.get_parsed_content("network")
    images = next(iter(vasomim.get_parsed_content("train#dataloader")))["image"].float()
    _bf16_close_to_fp32(lambda: trainer.objective(network, images, None, 0.5)["loss"], network)

    seg = _parsed("xa_vessel_seg", tmp_path / "s", synthetic_length=4, synthetic_val_length=2)
    network, loss = seg.get_parsed_content("network"), seg.get_parsed_content("loss")
    batch = next(iter(seg.get_parsed_content("train#dataloader")))
    plain = lambda t: t.as_tensor() if hasattr(t, "as_tensor") else t  # noqa: E731
    _bf16_close_to_fp32(lambda: loss(network(plain(batch["image"]).float()).float(), plain(batch["label"])), network)

    write_quality_benchmark(str(tmp_path / "bench"), n=12, size=64, seed=0, progress=False)
    iqa = _parsed("cas_iqa", tmp_path / "q", dataset_dir=str(tmp_path / "bench"))
    network, loss = iqa.get_parsed_content("network"), iqa.get_parsed_content("loss")
    image, target, _, kwargs = prepare_quality_batch(next(iter(iqa.get_parsed_content("train#dataloader"))), torch.device("cpu"))
    _bf16_close_to_fp32(lambda: loss(network(image, **kwargs), target), network)


def test_the_compiled_forward_is_one_graph_and_matches_eager():
    """``compile_network``: torch.compile(fullgraph=True) of the MAE forward (a graph break
    would raise), on the CPU with the aot_eager backend (no C compiler needed); same
    reconstruction and gradients as eager on the same visible patches."""
    from angiokit.engines import VasoMIMObjective, compile_network
    from angiokit.networks import VasoMIM

    torch.manual_seed(0)
    model = VasoMIM("vit_tiny", img_size=32, norm_pix_loss=True)
    compiled = compile_network(model, backend="aot_eager")
    images = torch.rand(2, 1, 32, 32)
    keep = torch.stack([torch.randperm(model.num_patches)[: model.num_patches - model.num_mask] for _ in range(2)])
    outputs = []
    for network in (model, compiled):
        model.zero_grad()
        pred, mask = network(images, keep)
        model.reconstruction_loss(images, pred, mask).backward()
        outputs.append((pred.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    assert torch.allclose(outputs[0][0], outputs[1][0], atol=1e-5) and torch.allclose(outputs[0][1], outputs[1][1], atol=1e-5)
    objective = VasoMIMObjective(guided=False, consistency_weight=0.0)
    assert torch.isfinite(objective(compiled, images, None, 0.0)["loss"])  # the step runs it as the network


def test_the_gpu_benchmark_runs_at_tiny_sizes_on_the_cpu(capsys):
    from apps.bench.gpu import run

    run(smoke=True)
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line and " " not in line)
    for key in ("mae_images_per_s", "vasomim_images_per_s", "mae_compiled_images_per_s", "vasomim_over_mae_eager", "prior_32px_images_per_s", "prior_128px_images_per_s"):
        assert float(lines[key]) > 0, (key, lines)


@pytest.mark.parametrize("bundle", ["vasomim_pretrain", "xa_vessel_seg", "cas_iqa"])
def test_the_cuda_options_follow_the_device(bundle, tmp_path):
    """Fused AdamW, non-blocking copies and pinned memory where CUDA is, persistent workers
    whenever there are workers, TF32 and cuDNN's autotuner set at start; torch.compile off by
    default (an option)."""
    from angiokit.data.quality import write_quality_benchmark

    extra = {"synthetic_length": 4, "synthetic_val_length": 2} if bundle == "xa_vessel_seg" else {"synthetic_length": 4} if bundle == "vasomim_pretrain" else {}
    if bundle == "cas_iqa":
        write_quality_benchmark(str(tmp_path / "bench"), n=12, size=64, seed=0, progress=False)
        extra = {"dataset_dir": str(tmp_path / "bench")}
    parser = _parsed(bundle, tmp_path / "b", **{**extra, "num_workers": 1})
    cuda = torch.cuda.is_available()
    assert parser.get_parsed_content("optimizer").defaults["fused"] is cuda
    loader = parser.get_parsed_content("train#dataloader")
    assert loader.persistent_workers is True and loader.pin_memory is cuda
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.non_blocking is cuda and trainer.compile is False
    assert parser["tf32"] is True and parser["cudnn_benchmark"] is True
    assert any("configure_cuda" in step for step in parser["initialize"])


def test_the_compile_option_trains_as_eager(tmp_path):
    """The pre-training bundle with ``--compile true`` (aot_eager here: no C compiler needed):
    the same first loss as eager, masks drawn alike from the seed."""
    losses = []
    for compiled in (False, True):
        wf = workflow("vasomim_pretrain", ["train"], "train", bundle_root=str(tmp_path / str(compiled)), synthetic_length=2, warmup_epochs=0, compile=compiled, compile_kwargs={"fullgraph": True, "dynamic": False, "backend": "aot_eager"}, **TINY_VIT)
        wf.initialize()
        wf.run()
        trainer = wf.parser.get_parsed_content("train#trainer")
        losses.append(float(trainer.state.output["loss"]))
        wf.finalize()
    assert losses[0] == pytest.approx(losses[1], rel=1e-4), losses
