"""The VasoMIM pre-training defaults are the official ones (XA-SSL: models_vmae.py,
frangi_filter.py, util/vessel_dataset.py, pretrain_vasomim.sh; MAE's main_pretrain.py), pinned
on the shipped configs (tiny sizes are overrides, never the defaults)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from scipy.ndimage import label

from angiokit.data.synthetic import SynthConfig, synthesize
from angiokit.data.writers import to_uint
from angiokit.engines import VasoMIMObjective, train_step
from angiokit.networks import AnatomyGuidance, VasoMIM
from angiokit.optim import global_batch_lr, param_groups
from angiokit.transforms import RandResizedCropd, binary_vessel_prior, grow_from_maximum, vesselness
from angiokit.transforms.binary_prior import DEFAULT_ROUNDS, border_for

from .bundle_utils import config
from .conftest import free_port

FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
TINY_PRETRAIN = {
    "preset": "vit_tiny", "image_size": 32, "batch_size": 4, "num_workers": 0, "synthetic_length": 8, "device": "$torch.device('cpu')",
    "network_def#decoder_num_layers": 1, "network_def#decoder_hidden_size": 32, "network_def#decoder_num_heads": 2, "network_def#decoder_mlp_dim": 64,
}
TINY_SEG = {"preset": "vit_tiny", "image_size": 32, "batch_size": 4, "num_workers": 0, "synthetic_length": 8, "synthetic_val_length": 2, "device": "$torch.device('cpu')"}


def _parser(bundle: str, names, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(config(bundle, *names))
    parser.update(overrides)
    return parser


def _decay_of(optimizer: torch.optim.Optimizer, network: torch.nn.Module) -> dict:
    """{parameter name: its group's weight decay} (parameters left out of the optimizer absent)."""
    by_id = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in getattr(network, "module", network).named_parameters() if id(p) in by_id}


# ---- the table of the bundle README, row by row -----------------------------------------------


def test_shipped_recipe_values():
    raw = json.loads(open(config("vasomim_pretrain", "train")[0]).read())
    assert raw["anatomical_consistency_weight"] == 1.0 and raw["consistency_input"] == "prediction"
    assert raw["norm_pix_loss"] is True and raw["mask_ratio"] == 0.5 and raw["prior_weight"] == 0.5 and raw["prior"] == "binary"
    assert (raw["base_lr"], raw["batch_size"], raw["weight_decay"], raw["no_weight_decay"]) == (1.5e-4, 256, 0.05, [])
    assert (raw["max_epochs"], raw["warmup_epochs"], raw["optimizer"]["betas"]) == (800, 40, [0.9, 0.95])
    assert (raw["image_size"], raw["preset"], raw["alpha_start"], raw["alpha_end"]) == (224, "vit_b16", 0.0, 0.5)


def test_the_built_trainer_runs_the_official_objective(tmp_path):
    parser = _parser("vasomim_pretrain", ["train"], **TINY_PRETRAIN, bundle_root=str(tmp_path))  # its handlers write there
    trainer = parser.get_parsed_content("train#trainer")
    objective = trainer.objective
    assert objective.consistency_weight == 1.0 and objective.consistency_input == "prediction" and objective.guided
    assert objective.anatomy.prior_kind == "binary" and objective.anatomy.prior_weight == 0.5
    assert trainer.network.norm_pix_loss is True and trainer.accumulation_steps == 1


def test_consistency_segments_the_whole_denormalised_prediction():
    torch.manual_seed(0)
    mae = VasoMIM("vit_tiny", img_size=32, patch_size=8, norm_pix_loss=True, decoder_num_layers=1, decoder_hidden_size=32, decoder_num_heads=2, decoder_mlp_dim=64)
    x = torch.rand(2, 1, 32, 32)
    # a perfect normalised prediction de-normalises to the image itself
    assert torch.allclose(mae.predicted_image(x, mae.targets(x)), x, atol=1e-5)
    anatomy = AnatomyGuidance(prior_border=1)
    torch.manual_seed(1)
    out = VasoMIMObjective(anatomy)(mae, x, alpha=0.5)
    whole = mae.predicted_image(x, out["pred"])
    expected = F.binary_cross_entropy_with_logits(anatomy.segmenter(whole).float(), out["segmentation"])
    assert torch.allclose(out["loss_consistency"], expected) and torch.allclose(out["loss"], out["loss_reconstruction"] + out["loss_consistency"])
    # every patch's prediction feeds the consistency loss, the visible ones too
    grad = torch.autograd.grad(out["loss_consistency"], out["pred"])[0]
    assert (grad.abs().sum(-1) > 0).all()
    torch.manual_seed(1)
    pasted = VasoMIMObjective(anatomy, consistency_input="pasted")(mae, x, alpha=0.5)
    grad = torch.autograd.grad(pasted["loss_consistency"], pasted["pred"])[0]
    assert (grad.abs().sum(-1)[pasted["mask"] == 0] == 0).all()  # visible patches come from the original


def test_pretraining_weight_decay_groups_are_mae_s():
    parser = _parser("vasomim_pretrain", ["train"], **TINY_PRETRAIN)
    network, optimizer = parser.get_parsed_content("network"), parser.get_parsed_content("optimizer")
    decay = _decay_of(optimizer, network)
    for name, p in network.named_parameters():
        if not p.requires_grad:  # fixed sin-cos position embeddings (as MAE's), unused cross-attention norms
            assert name not in decay
        elif p.ndim <= 1:
            assert decay[name] == 0.0, name  # biases, norm weights
        else:
            assert decay[name] == 0.05, name  # weights; cls and mask tokens too, as MAE pre-training
    assert "patch_embedding.position_embeddings" not in decay and "decoder_pos_embedding" not in decay
    assert decay["cls_token"] == decay["mask_tokens"] == 0.05 and decay["blocks.0.norm1.weight"] == decay["decoder_pred.bias"] == 0.0
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    # the fine-tuning rule on request
    parser = _parser("vasomim_pretrain", ["train"], **TINY_PRETRAIN, no_weight_decay=["cls_token", "mask_tokens"])
    decay = _decay_of(parser.get_parsed_content("optimizer"), parser.get_parsed_content("network"))
    assert decay["cls_token"] == decay["mask_tokens"] == 0.0 and decay["blocks.0.attn.qkv.weight"] == 0.05


def test_segmentation_weight_decay_groups_spare_the_embeddings():
    parser = _parser("xa_vessel_seg", ["train"], **TINY_SEG)
    network, optimizer = parser.get_parsed_content("network"), parser.get_parsed_content("optimizer")
    decay = _decay_of(optimizer, network)
    assert decay["vit.patch_embedding.position_embeddings"] == 0.0  # learnable here: MAE fine-tuning's no_weight_decay
    for name, p in network.named_parameters():
        if p.requires_grad and (p.ndim <= 1 or name.endswith(".bias")):
            assert decay[name] == 0.0, name
    assert decay["vit.blocks.0.mlp.linear1.weight"] == 0.05
    scales = {g["lr_scale"] for g in optimizer.param_groups}
    assert min(scales) == pytest.approx(0.75 ** 3) and max(scales) == 1.0  # layer decay 0.75 over 2 blocks
    plain = param_groups(network, 0.05, ["position_embeddings", "cls_token"])  # the same rule without layer decay
    assert {g["weight_decay"] for g in plain} == {0.0, 0.05} and sum(len(g["params"]) for g in plain) == len(decay)


def _rank_lr(rank: int, world: int, port: int, out: str) -> None:
    """One process of the 2-process gloo run: the shipped configs + multi_gpu_train.json (tiny
    sizes), initialised as under torchrun; writes the optimizers' learning rates."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    found = {}
    for bundle, tiny, accumulation in (("vasomim_pretrain", TINY_PRETRAIN, 1), ("vasomim_pretrain", TINY_PRETRAIN, 3), ("xa_vessel_seg", TINY_SEG, None)):
        extra = {} if accumulation is None else {"gradient_accumulation_steps": accumulation}
        parser = _parser(bundle, ["train", "multi_gpu_train"], **tiny, **extra)
        parser.get_parsed_content("initialize")
        optimizer = parser.get_parsed_content("optimizer")
        found[f"{bundle}_{accumulation}"] = {"lr": max(g["lr"] for g in optimizer.param_groups), "base_lr": parser.get_parsed_content("base_lr"), "world_size": parser.get_parsed_content("world_size")}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(found, f)
    torch.distributed.destroy_process_group()


def test_lr_follows_the_global_batch_under_two_gloo_processes(tmp_path):
    torch.multiprocessing.spawn(_rank_lr, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        pre, pre3, seg = found["vasomim_pretrain_1"], found["vasomim_pretrain_3"], found["xa_vessel_seg_None"]
        assert pre["world_size"] == 2 and pre["base_lr"] == 1.5e-4
        assert pre["lr"] == pytest.approx(1.5e-4 * 4 * 2 / 256)  # base lr x batch x processes / 256
        assert pre3["lr"] == pytest.approx(1.5e-4 * 4 * 2 * 3 / 256)  # x gradient-accumulation steps
        assert seg["lr"] == pytest.approx(seg["base_lr"] * 4 * 2 / 256)


def test_global_batch_lr_is_logged_and_the_paper_figure(caplog):
    with caplog.at_level("INFO", logger="angiokit.optim"):
        lr = global_batch_lr(1.5e-4, 256, processes=8)
    assert lr == pytest.approx(1.2e-3)  # pretrain_vasomim.sh: 8 GPUs x 256, blr 1.5e-4
    assert "global batch 2048" in caplog.text and "8 processes" in caplog.text


def test_gradient_accumulation_equals_one_step_on_the_whole_batch():
    def objective(network, images, prior, alpha):
        return {"loss": network(images).pow(2).mean()}

    torch.manual_seed(0)
    whole, parts = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    parts.load_state_dict(whole.state_dict())
    x = torch.randn(8, 3)
    train_step(whole, objective, torch.optim.SGD(whole.parameters(), lr=0.1), x)
    optimizer = torch.optim.SGD(parts.parameters(), lr=0.1)
    before = parts.weight.detach().clone()
    train_step(parts, objective, optimizer, x[:4], accumulation_steps=2, micro_step=0)
    assert torch.equal(parts.weight, before)  # no step before the cycle ends
    train_step(parts, objective, optimizer, x[4:], accumulation_steps=2, micro_step=1)
    assert torch.allclose(parts.weight, whole.weight) and torch.allclose(parts.bias, whole.bias)


# ---- the binary prior ---------------------------------------------------------------------


def _official_reference(response: np.ndarray, border: int, percentile: float) -> np.ndarray:
    """The official threshold and region growing in numpy / scipy, on a given Sato response."""
    v = np.clip(np.floor(response), 0, 255)
    v[:border], v[-border:], v[:, :border], v[:, -border:] = 0, 0, 0, 0
    kept = np.where(v >= np.percentile(v, percentile), v, 0)
    labels, _ = label(kept > 0, structure=FOUR_CONNECTED)
    return labels == labels.flat[np.argmax(kept)]


def test_binary_prior_of_a_synthetic_frame():
    frame = to_uint(synthesize(SynthConfig(size=128), seed=3).image[0], 8).astype(np.float32)
    x = torch.from_numpy(frame)[None, None]
    prior = binary_vessel_prior(x, border=20, percentile=92.0, grey_levels=1.0)[0, 0].numpy()
    assert set(np.unique(prior)) == {0.0, 1.0}
    mask = prior > 0
    assert not mask[:20].any() and not mask[-20:].any() and not mask[:, :20].any() and not mask[:, -20:].any()
    labels, count = label(mask, structure=FOUR_CONNECTED)
    assert count == 1  # one 4-connected region
    v = vesselness(x)[0, 0].numpy()
    v = np.clip(np.floor(v), 0, 255)
    v[:20], v[-20:], v[:, :20], v[:, -20:] = 0, 0, 0, 0
    assert mask.flat[np.argmax(v)]  # it holds the maximum
    assert mask.mean() > 0.02  # the vessel tree, not a speck
    assert np.array_equal(mask, _official_reference(vesselness(x)[0, 0].numpy(), 20, 92.0))


def test_binary_prior_agrees_with_the_official_skimage_filter():
    from skimage import filters

    u8 = to_uint(synthesize(SynthConfig(size=256), seed=0).image[0], 8)
    official = filters.sato(u8, sigmas=[1, 2, 3, 4], black_ridges=True, mode="reflect", cval=0).astype(np.uint8)  # as frangi_filter.py
    reference = _official_reference(official.astype(np.float64), 20, 92.0)
    ours = binary_vessel_prior(torch.from_numpy(u8.astype(np.float32))[None, None], grey_levels=1.0, rounds=None)[0, 0].numpy() > 0
    assert (reference & ours).sum() / (reference | ours).sum() > 0.9  # the filters differ slightly (see vesselness.py)


def _maze(cells: int, seed: int = 0) -> np.ndarray:
    """A random spanning-tree maze: one 4-connected tree of corridors filling the image."""
    rng, size = np.random.default_rng(seed), 2 * cells + 1
    maze, seen, stack = np.zeros((size, size), bool), np.zeros((cells, cells), bool), [(0, 0)]
    seen[0, 0] = maze[1, 1] = True
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)) if 0 <= r + dr < cells and 0 <= c + dc < cells and not seen[r + dr, c + dc]]
        if not options:
            stack.pop()
            continue
        nr, nc = options[rng.integers(len(options))]
        seen[nr, nc] = maze[2 * nr + 1, 2 * nc + 1] = maze[r + nr + 1, c + nc + 1] = True
        stack.append((nr, nc))
    return maze


def test_region_growing_in_the_step_rounds_reaches_the_whole_tree():
    maze = np.pad(_maze(111), ((0, 1), (0, 1)))  # 224 x 224, a tree of 24,641 pixels
    seeds = torch.tensor([int(np.flatnonzero(maze)[-1]), int(np.flatnonzero(maze)[0])])
    grown = grow_from_maximum(torch.from_numpy(np.stack([maze, maze])), seeds, DEFAULT_ROUNDS)
    assert torch.equal(grown, torch.from_numpy(np.stack([maze, maze])))
    two = maze.copy()
    two[:, 100:103] = False  # two trees: only the seed's grows
    grown = grow_from_maximum(torch.from_numpy(two)[None], seeds[:1], DEFAULT_ROUNDS)[0].numpy()
    labels, _ = label(two, structure=FOUR_CONNECTED)
    assert np.array_equal(grown, labels == labels.flat[int(seeds[0])])


def test_guidance_prior_is_the_binary_one_and_given_priors_win():
    frames = torch.stack([torch.from_numpy(synthesize(SynthConfig(size=64), seed=s).image[:1]) for s in range(2)])
    anatomy = AnatomyGuidance()
    prior, seg = anatomy.prior_and_segmentation(frames)
    assert set(prior.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(prior, binary_vessel_prior(frames, border=border_for(64), rounds=None))  # 20 px of 512, at 64 px
    guidance, _ = anatomy.step_maps(frames, guided=True, segmentation=True)
    assert torch.allclose(guidance, 0.5 * prior + 0.5 * seg)
    given = torch.zeros_like(prior)
    guidance, _ = anatomy.step_maps(frames, prior=given, guided=True, segmentation=True)
    assert torch.allclose(guidance, 0.5 * seg)
    continuous = AnatomyGuidance(prior="continuous").prior(frames)
    assert continuous.amax() == 1.0 and len(continuous.unique()) > 2


# ---- the augmentation -----------------------------------------------------------------------


def test_crop_draws_the_official_ranges_with_one_box_for_image_and_prior():
    crop = RandResizedCropd(["image", "prior"], size=24, mode=["bicubic", "nearest"])
    h, w = 90, 120
    image = torch.linspace(0, 1, h * w).reshape(1, h, w)
    prior = (torch.rand(1, h, w, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    areas, ratios = [], []
    for seed in range(300):
        crop.set_random_state(seed)
        out = crop({"image": image, "prior": prior})
        top, left, bh, bw = crop.box
        assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w
        assert out["image"].shape == out["prior"].shape == (1, 24, 24)
        assert torch.equal(out["image"], crop.crop_resize(image, "bicubic")) and torch.equal(out["prior"], crop.crop_resize(prior, "nearest"))
        assert set(out["prior"].unique().tolist()) <= {0.0, 1.0} and 0 <= out["image"].min() and out["image"].max() <= 1
        areas.append(bh * bw / (h * w))
        ratios.append(bw / bh)
    # rounding a side to whole pixels moves area and ratio a little past the drawn ones
    assert 0.2 - 0.02 <= min(areas) < 0.3 and max(areas) <= 1.0 and max(areas) > 0.8
    assert 0.75 - 0.03 <= min(ratios) < 0.8 and 1.28 < max(ratios) <= 4 / 3 + 0.03
    assert np.median(np.log(ratios)) == pytest.approx(0.0, abs=0.1)  # log-uniform about 1


def test_the_bundle_pipeline_uses_the_official_crop_and_flip():
    parser = _parser("vasomim_pretrain", ["train"], image_size=32)
    steps = parser.get_parsed_content("train#preprocessing", instantiate=True).transforms
    crop, flip = steps[3], steps[4]
    assert isinstance(crop, RandResizedCropd) and crop.size == (32, 32)
    assert crop.scale == (0.2, 1.0) and crop.ratio == pytest.approx((3 / 4, 4 / 3)) and crop.mode == ("bicubic", "nearest")
    assert type(flip).__name__ == "RandFlipd" and flip.flipper.spatial_axis == 1 and flip.prob == 0.5
    assert len(steps) == 5


# ---- offline priors --------------------------------------------------------------------------


def test_offline_priors_of_a_folder_and_of_a_datalist(tmp_path):
    from angiokit.data.priors import write_priors
    from angiokit.data.readers import read_angiogram
    from angiokit.data.writers import write_png

    frames = tmp_path / "cadica"
    for s in range(2):
        write_png(frames / "run1" / f"f{s}.png", to_uint(synthesize(SynthConfig(size=96), seed=s).image[0], 8))
    out = write_priors(str(frames), workers=1, progress=False)
    assert out == str(tmp_path / "cadica_frangi")
    written = sorted(p.relative_to(out) for p in (tmp_path / "cadica_frangi").rglob("*.png"))
    assert [str(p) for p in written] == [os.path.join("run1", "f0.png"), os.path.join("run1", "f1.png")]
    pixels = read_angiogram(tmp_path / "cadica_frangi" / "run1" / "f0.png").frames[0]
    assert set(np.unique(pixels)) == {0.0, 255.0} and not pixels[:20].any()
    frame = read_angiogram(frames / "run1" / "f0.png").frames[0]
    expected = binary_vessel_prior(torch.from_numpy(frame)[None, None], grey_levels=1.0, rounds=None)[0, 0].numpy() * 255
    assert np.array_equal(pixels, expected)

    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "cadica/run1/f0.png"}], "validation": [{"image": "cadica/run1/f1.png"}]}))
    new = write_priors(str(datalist), progress=False)
    doc = json.loads(open(new).read())
    assert doc["training"][0]["prior"] == os.path.join("priors", "f0.png") and (tmp_path / doc["validation"][0]["prior"]).exists()


def test_crop_is_seeded_by_monai_and_falls_back_to_the_centre():
    crop = RandResizedCropd("image", size=8, scale=(0.99, 1.0), ratio=(3.0, 4.0))  # no such box fits a square
    crop.set_random_state(0)
    crop({"image": torch.rand(1, 40, 40)})
    assert crop.box == (13, 0, 13, 40)  # the whole width at the nearest allowed ratio (3), centred
    a, b = RandResizedCropd("image", size=8), RandResizedCropd("image", size=8)
    a.set_random_state(5), b.set_random_state(5)
    x = {"image": torch.rand(1, 50, 60)}
    assert torch.equal(a(x)["image"], b(x)["image"]) and a.box == b.box


def test_vesselness_gradients_written_out_equal_autograd_s():
    """The consistency loss differentiates the Sato filter every step; its hand-written backward
    (``_BlurPass``, ``_SatoResponse``) gives autograd's gradient of the same forward."""
    import importlib

    vess = vars(importlib.import_module("angiokit.transforms.vesselness"))  # the module (the package exports the function)

    def traced(x, sigmas):  # the same cascade, every op recorded by autograd
        best, level, variance = torch.zeros_like(x), x, 0.0
        for sigma in sigmas:
            target = sigma**2 - vess["SECOND_DIFF_VARIANCE"]
            step = math.sqrt(max(target - variance, 0.0))
            variance = max(target, variance)
            if step >= 0.05:
                k = vess["_gaussian_weights"](step)
                level = vess["_blur_pass"](vess["_blur_pass"](level, k, -1), k, -2)
            response = vess["_response"]("sato", *vess["hessian_eigenvalues"](*vess["hessian_from_smoothed"](level)), sigma, 0.5)
            best = torch.maximum(best, response)
        return best

    x = torch.rand(2, 1, 40, 36)
    weights = torch.rand(2, 1, 40, 36)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, slow = vesselness(a, (1.0, 2.0, 3.0)), traced(b, (1.0, 2.0, 3.0))
    assert torch.allclose(fast, slow, atol=1e-6)
    (fast * weights).sum().backward()
    (slow * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4)


def test_the_official_loop_sampler_on_request(tmp_path):
    parser = _parser("vasomim_pretrain", ["train"], **TINY_PRETRAIN, bundle_root=str(tmp_path), masking_sampler="loop")
    objective = parser.get_parsed_content("train#trainer").objective
    assert objective.sample_masks.__name__ == "reference_guided_masking"
    torch.manual_seed(0)
    mae = VasoMIM("vit_tiny", img_size=32, patch_size=8, decoder_num_layers=1, decoder_hidden_size=32, decoder_num_heads=2, decoder_mlp_dim=64)
    out = objective(mae, torch.rand(2, 1, 32, 32), alpha=0.5)
    assert (out["mask"].sum(1) == 8).all() and torch.isfinite(out["loss"])
