"""XA-170K listing (frames + ``<source>_frangi`` priors), the packed frame store and the random
resized crops that read it (CPU per item, batched on the training device)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from angiokit.data import AngioDataError, build_datalist, write_datalist, write_dicom_xa, write_png
from angiokit.data.frame_store import (
    PackedFrameDataset,
    gpu_random_resized_crop,
    pack_frames,
    read_store_index,
    resized_crop,
    sample_crop_boxes,
)
from angiokit.data.pretrain import pretrain_items

SIDE = 32


def _frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (SIDE, SIDE), dtype=np.uint8)


def _prior(seed: int) -> np.ndarray:
    return (np.random.default_rng(1000 + seed).random((SIDE, SIDE)) > 0.8).astype(np.uint8) * 255


@pytest.fixture()
def xa170k(tmp_path):
    """XA-170K as published, tiny: cadica (3 frames, all with priors), syntax (3 frames, 2 with
    priors), xcad (2 frames, no _frangi folder). Returns (root, {frame path: prior path or None})."""
    root = tmp_path / "xa170k"
    layout = {"cadica": (3, 3), "syntax": (3, 2), "xcad": (2, 0)}
    expected, seed = {}, 0
    for source, (frames, priors) in layout.items():
        for i in range(frames):
            name = f"{source}_{i:03d}.png"
            frame = write_png(root / source / name, _frame(seed))
            prior = write_png(root / f"{source}_frangi" / name, _prior(seed)) if i < priors else None
            expected[str(frame)] = str(prior) if prior else None
            seed += 1
    return root, expected


def test_xa170k_frames_are_paired_with_their_priors_and_no_prior_is_a_frame(xa170k):
    root, expected = xa170k
    items = pretrain_items(data_glob=os.path.join(root, "**", "*.png"))
    assert sorted(it["image"] for it in items) == sorted(expected)  # 8 frames; the 5 prior PNGs are not frames
    assert not [it for it in items if "_frangi" in os.path.dirname(it["image"])]
    assert {it["image"]: it.get("prior") for it in items} == expected  # paired by name; absent where missing
    # a glob that reaches only one source still finds its priors beside it
    cadica = pretrain_items(data_glob=os.path.join(root, "cadica", "*.png"))
    assert len(cadica) == 3 and all(it["prior"].endswith(os.path.join("cadica_frangi", os.path.basename(it["image"]))) for it in cadica)
    with pytest.raises(AngioDataError, match="only offline priors"):
        pretrain_items(data_glob=os.path.join(root, "cadica_frangi", "*.png"))


def test_a_plain_tree_is_all_frames_and_relative_globs_keep_their_form(tmp_path, monkeypatch):
    # "vessels_frangi" has no sibling "vessels": an ordinary folder of frames
    for folder in ("images/a", "images/b", "vessels_frangi"):
        write_png(tmp_path / folder / "f.png", _frame(0))
    items = pretrain_items(data_glob=os.path.join(tmp_path, "**", "*.png"))
    assert len(items) == 3 and all(set(it) == {"image"} for it in items)
    write_png(tmp_path / "xcad" / "f.png", _frame(1))
    write_png(tmp_path / "xcad_frangi" / "f.png", _prior(1))
    monkeypatch.chdir(tmp_path)
    assert pretrain_items(data_glob="xcad/*.png") == [{"image": "xcad/f.png", "prior": os.path.join("xcad_frangi", "f.png")}]


def _scaled(frame: np.ndarray) -> np.ndarray:
    """What the store holds for a frame at its own size: 0.5-99.5 percentiles to 0-255."""
    lo, hi = np.percentile(frame.astype(np.float32), (0.5, 99.5))
    return np.rint(np.clip((frame.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def test_pack_an_xa170k_root_keeps_frames_priors_and_their_sources(xa170k, tmp_path):
    import apps.prepare

    root, expected = xa170k
    out = tmp_path / "store"
    apps.prepare.pack(str(root), str(out), size=SIDE)
    index = read_store_index(out)
    assert index["count"] == 8 and index["prior_count"] == 5 and index["size"] == SIDE
    frames = np.load(out / "frames.npy", mmap_mode="r")
    priors = np.load(out / "priors.npy", mmap_mode="r")
    for row, source in enumerate(index["sources"]):
        image = os.path.join(index["root"], source["image"])
        assert source["frame"] == 0 and "_frangi" not in source["image"]
        np.testing.assert_array_equal(frames[row], _scaled(np.asarray(Image.open(image))))
        if expected[image]:
            assert os.path.join(index["root"], source["prior"]) == expected[image]
            np.testing.assert_array_equal(priors[row], np.asarray(Image.open(expected[image])))
        else:
            assert "prior" not in source and not priors[row].any()
    # priors for only some frames would not collate: served only when asked, which fails clearly
    dataset = PackedFrameDataset(out)
    assert set(dataset[0]) == {"image"} and dataset[0]["image"].dtype == torch.uint8 and dataset[0]["image"].shape == (1, SIDE, SIDE)
    with pytest.raises(AngioDataError, match="5 of 8 frames"):
        PackedFrameDataset(out, with_prior=True)
    # one source, all with priors (found beside it), resized on the way in
    pack_frames(root / "cadica", out, size=16, progress=False)
    item = PackedFrameDataset(out)[2]
    assert set(item) == {"image", "prior"} and item["image"].shape == item["prior"].shape == (1, 16, 16)
    assert set(np.unique(item["prior"].numpy())) <= {0, 255}  # nearest keeps a binary prior binary


def test_pack_a_dicom_cine_row_per_frame(tmp_path):
    cine = np.stack([_frame(s) for s in range(3)]).astype(np.uint16) * 16  # 12-bit
    write_dicom_xa(tmp_path / "cines" / "run1.dcm", cine, pixel_spacing_mm=0.3, frame_time_ms=66.7)
    out = pack_frames(tmp_path / "cines", tmp_path / "store", size=SIDE, progress=False)
    index = read_store_index(out)
    assert [s["frame"] for s in index["sources"]] == [0, 1, 2] and index["priors"] is None
    dataset = PackedFrameDataset(out)
    for t in range(3):  # 8 vs 12 bits: the same frames once each is scaled by its percentiles
        assert np.abs(dataset[t]["image"][0].numpy().astype(int) - _scaled(cine[t]).astype(int)).max() <= 1
    # a datalist naming one frame of the cine, and a still with its prior
    write_png(tmp_path / "stills" / "s.png", _frame(7))
    write_png(tmp_path / "priors" / "s.png", _prior(7))
    entries = [{"case": "run1", "image": str(tmp_path / "cines" / "run1.dcm"), "frame": 2}, {"case": "s", "image": str(tmp_path / "stills" / "s.png"), "prior": str(tmp_path / "priors" / "s.png")}]
    datalist = write_datalist(tmp_path / "datalist.json", build_datalist(entries, str(tmp_path), 0, 0, path_keys=("image", "prior")))
    index = read_store_index(pack_frames(datalist, tmp_path / "store", size=SIDE, progress=False))
    assert index["sources"] == [{"image": "cines/run1.dcm", "frame": 2}, {"image": "stills/s.png", "frame": 0, "prior": "priors/s.png"}]
    assert np.array_equal(np.load(tmp_path / "store" / "frames.npy")[0], dataset[2]["image"][0].numpy())


def test_a_bad_frame_is_named_and_the_previous_store_survives(xa170k, tmp_path):
    root, _ = xa170k
    out = tmp_path / "store"
    pack_frames(root / "xcad", out, size=SIDE, progress=False)
    (root / "xcad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(AngioDataError, match="broken.png"):
        pack_frames(root / "xcad", out, size=SIDE, progress=False)
    assert len(PackedFrameDataset(out)) == 2  # the store from before is intact
    assert sorted(os.listdir(tmp_path)) == ["store", "xa170k"]  # no half-written folder left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(AngioDataError, match="not a frame store"):
        pack_frames(root / "cadica", tmp_path / "notes", size=SIDE, progress=False)
    with pytest.raises(AngioDataError, match="no frames found"):
        pack_frames(tmp_path / "notes", tmp_path / "store2", progress=False)


def test_the_dataset_pickles_without_its_map_and_shards_under_distributed_sampler(xa170k, tmp_path):
    from torch.utils.data import DataLoader, DistributedSampler

    root, _ = xa170k
    out = pack_frames(root, tmp_path / "store", size=SIDE, progress=False)
    dataset = PackedFrameDataset(out)
    dataset[0]  # maps the file in this process
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._arrays is None and len(clone) == 8 and torch.equal(clone[3]["image"], dataset[3]["image"])
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=1 if rank == 0 else 0)
        batches = list(loader)
        assert len(batches) == 2 and all(b["image"].shape == (2, 1, SIDE, SIDE) and b["image"].dtype == torch.uint8 for b in batches)
        for batch, indices in zip(batches, np.array_split(list(sampler), 2)):
            assert all(torch.equal(batch["image"][j], dataset[int(i)]["image"]) for j, i in enumerate(indices))
        seen += list(sampler)
    assert sorted(seen) == list(range(8))  # the two ranks split the store


def test_the_bundle_overlay_trains_on_a_store(xa170k, tmp_path):
    """configs/packed.json: train#dataset reads the store; items as the trainer takes them."""
    from monai.bundle import ConfigParser
    from monai.data import DataLoader

    from .bundle_utils import config

    root, _ = xa170k
    store = pack_frames(root / "cadica", tmp_path / "store", size=SIDE, progress=False)  # every frame has a prior
    parser = ConfigParser()
    parser.read_config(config("vasomim_pretrain", "train", "packed"))
    parser.update({"image_size": 16, "packed_store": str(store)})
    dataset = parser.get_parsed_content("train#dataset")
    assert isinstance(dataset, PackedFrameDataset) and len(dataset) == 3
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    for key in ("image", "prior"):
        assert batch[key].shape == (3, 1, 16, 16) and batch[key].dtype == torch.float32
        assert 0 <= batch[key].min() and batch[key].max() <= 1 and batch[key].max() > 0.5
    assert set(torch.unique(batch["prior"]).tolist()) <= {0.0, 1.0}  # nearest keeps the binary prior binary


def test_gpu_crop_boxes_follow_the_recipe_without_leaving_the_frame():
    boxes, flips = sample_crop_boxes(4096, 48, 64, generator=torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64 + 1e-4).all() and (boxes[:, 3] <= 48 + 1e-4).all()
    assert ((w * h / (48 * 64)) >= 0.2 - 1e-4).all() and ((w * h / (48 * 64)) <= 1 + 1e-4).all()
    assert ((w / h) >= 0.75 - 1e-4).all() and ((w / h) <= 4 / 3 + 1e-4).all()
    assert 0.45 < flips.float().mean() < 0.55 and (w * h / (48 * 64)).std() > 0.15
    again, _ = sample_crop_boxes(4096, 48, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)


def test_gpu_crop_puts_a_known_pattern_where_expected_and_flips_it():
    image = torch.zeros(1, 1, 64, 64, dtype=torch.uint8)
    image[..., 16:32, 32:48] = 255  # a bright square: rows 16-32, columns 32-48
    # the square's own box at its own size: an exact copy (no blur when not downsampling)
    exact = resized_crop(image, torch.tensor([[32.0, 16.0, 48.0, 32.0]]), 16)
    assert torch.equal(exact, torch.ones(1, 1, 16, 16))
    # the whole frame at a quarter: the square lands at rows 4-8, columns 8-12
    whole = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    for flip, centre_col in ((False, 10.0), (True, 6.0)):
        out = resized_crop(image, whole, 16, flips=torch.tensor([flip]))[0, 0]
        assert 0 <= out.min() and out.max() <= 1
        rows, cols = torch.meshgrid(torch.arange(16.0) + 0.5, torch.arange(16.0) + 0.5, indexing="ij")
        mass = out.sum()
        assert abs(float((out * rows).sum() / mass) - 6.0) < 0.05 and abs(float((out * cols).sum() / mass) - centre_col) < 0.05
        assert float(mass) == pytest.approx(16.0, rel=0.02)  # anti-aliased: the square's area is kept


def test_gpu_random_resized_crop_samples_each_prior_at_its_box():
    batch, side, size = 6, 64, 16
    columns = torch.arange(side, dtype=torch.uint8).repeat(side, 1)  # prior value = column
    priors = columns[None, None].repeat(batch, 1, 1, 1)
    images = (columns * 4)[None, None].repeat(batch, 1, 1, 1)
    out, out_priors = gpu_random_resized_crop(images, priors, size, generator=torch.Generator().manual_seed(3))
    assert out.shape == out_priors.shape == (batch, 1, size, size) and out.dtype == out_priors.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    boxes, flips = sample_crop_boxes(batch, side, side, generator=torch.Generator().manual_seed(3))
    centres = torch.arange(size) + 0.5
    for b in range(batch):
        x0, _, x1, _ = boxes[b].tolist()
        x = x0 + centres * (x1 - x0) / size
        expected = torch.floor(x.flip(0) if flips[b] else x)  # nearest: the pixel holding each centre
        got = (out_priors[b, 0] * 255).round()
        assert (got == expected[None]).float().mean() > 0.95 and (got - expected[None]).abs().max() <= 1
        # the image (a ramp, bicubic) follows the same box and flip
        assert torch.allclose(out[b, 0, size // 2, 2:-2] * 255 / 4, (x.flip(0) if flips[b] else x)[2:-2] - 0.5, atol=0.6)


def test_gpu_crop_anti_aliases_when_it_shrinks():
    stripes = torch.zeros(1, 1, 64, 64, dtype=torch.uint8)
    stripes[..., ::2] = 255  # one-pixel stripes: a quarter-size sample should see only their mean
    box = torch.tensor([[0.5, 0.5, 60.5, 60.5]])  # output pixel centres fall on pixel centres 2, 6, 10, ...
    out = resized_crop(stripes, box, 15)
    assert (out[..., 2:-2, 2:-2] - 0.5).abs().max() < 0.1
    aliased = resized_crop(stripes, box, 15, antialias=False)
    assert torch.equal(aliased, torch.ones_like(aliased))  # grid_sample alone: every sample on a bright stripe


def test_the_overlay_crops_on_the_device_when_asked(xa170k, tmp_path):
    """``--gpu_crop true`` (the default on CUDA): the store's uint8 frames go to the device whole
    and the trainer crops and flips them in batch there; here on the CPU, one short epoch."""
    from .bundle_utils import workflow

    root, _ = xa170k
    store = pack_frames(root / "cadica", tmp_path / "store", size=SIDE, progress=False)
    wf = workflow("vasomim_pretrain", ["train", "packed"], "train", bundle_root=str(tmp_path / "run"), packed_store=str(store), gpu_crop=True, preset="vit_tiny", image_size=32, batch_size=2, num_workers=0, max_epochs=1, warmup_epochs=0, device="$torch.device('cpu')")
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.data_loader.dataset.transform is None and trainer.batch_transform is not None
    wf.run()
    assert trainer.state.output["image"].shape == (2, 1, 32, 32) and torch.isfinite(trainer.state.output["loss"])
    wf.finalize()
