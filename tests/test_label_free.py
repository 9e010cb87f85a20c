"""Label-free domain adaptation: synthetic vessels on real backgrounds, Fourier style, the
intensity-order / local-contrast inputs, and the segmentation bundle's label_free overlay."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from angiokit.data import write_png
from angiokit.data.domain import CompositeOnRealBackgroundd, RandFourierStyled, fourier_style, remove_vessels, unlabelled_files
from angiokit.data.synthetic import default_config, synthesize
from angiokit.networks import ViTSegmenter, load_network
from angiokit.transforms import InputTransform, local_contrast, local_intensity_order

from .bundle_utils import run_workflow
from .test_seg_bundle import TRAIN


def _textured(seed, size=96, line=True, texture=1.0):
    """A textured frame (grey levels) with a dark line: a vessel that remove_vessels must fill."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    frame = 140 + texture * (40 * np.sin(xx / 17.0 + seed) + 20 * np.cos(yy / 23.0)) + rng.normal(0, 2, (size, size))
    if line:
        frame[(np.abs(yy - 0.6 * xx - 20) < 2.5)] -= 70
    return frame.astype(np.float32)


def _real_like(path, seed, size=96, texture=1.0):
    write_png(str(path), _textured(seed, size, texture=texture)[None].clip(0, 255).astype(np.uint8))
    return str(path)


@pytest.fixture
def real_files(tmp_path):
    return [_real_like(tmp_path / f"real_{i}.png", i) for i in range(3)]


@pytest.fixture(scope="module")
def synthetic():
    s = synthesize(default_config(size=128), 5, vessel_layer=True)
    return {"image": torch.from_numpy(s.image[:1].copy()), "label": torch.from_numpy(s.vessel[:1].astype(np.float32)),
            "vessel_layer": torch.from_numpy(s.vessel_line_integral[:1].copy())}


def test_the_vessel_layer_leaves_the_frame_unchanged_and_covers_the_vessels():
    cfg = default_config(size=128)  # at 64 px many vessels are thinner than a pixel: masked one pixel wide, with little iodine at its centre
    with_layer, plain = synthesize(cfg, 3, vessel_layer=True), synthesize(cfg, 3)
    assert np.array_equal(with_layer.image, plain.image) and plain.vessel_line_integral is None
    layer, mask = with_layer.vessel_line_integral[0], with_layer.vessel[0] > 0
    assert layer.shape == mask.shape and layer.min() >= 0
    assert (layer[mask] > 0).mean() > 0.9  # the mask's pixels are where the iodine is
    assert layer[mask].mean() > 5 * layer[~mask].mean()


def test_remove_vessels_fills_a_dark_line_and_keeps_the_rest():
    with_line, without = _textured(0), _textured(0, line=False)
    yy, xx = np.mgrid[0:96, 0:96]
    line = np.abs(yy - 0.6 * xx - 20) < 1.5
    cleaned = remove_vessels(with_line, max_width_px=10)
    assert np.abs(cleaned[line] - without[line]).mean() < 0.15 * 70  # filled: 70 grey levels dark before
    far = np.abs(yy - 0.6 * xx - 20) > 12
    assert np.abs(cleaned[far] - with_line[far]).mean() < 0.5  # the background keeps its texture and noise


def test_composite_keeps_the_label_on_the_vessels_and_is_seeded(real_files, synthetic):
    def run(seed):
        t = CompositeOnRealBackgroundd(backgrounds=real_files, contrast=0.4)
        t.set_random_state(seed)
        return t(dict(synthetic))

    a, b, c = run(0), run(0), run(1)
    assert "vessel_layer" not in a and a["image"].shape == synthetic["image"].shape
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    assert torch.equal(a["label"], synthetic["label"])
    image, vessel = a["image"][0].numpy(), synthetic["label"][0].numpy() > 0
    assert not np.allclose(image, synthetic["image"][0].numpy())  # a real background now
    near = ndimage.binary_dilation(vessel, iterations=4) & ~vessel
    assert image[vessel].mean() < image[near].mean() - 0.05  # the vessels are dark where labelled


def test_composite_names_the_missing_layer(real_files, synthetic):
    with pytest.raises(KeyError, match="vessel_layer"):
        CompositeOnRealBackgroundd(backgrounds=real_files)({"image": synthetic["image"]})
    with pytest.raises(ValueError, match="real_unlabelled is empty"):
        unlabelled_files("")


def test_fourier_style_swaps_low_frequencies_only():
    rng = np.random.default_rng(0)
    source, style = torch.from_numpy(rng.random((1, 64, 64), dtype=np.float32)), torch.full((1, 64, 64), 0.8)
    out = fourier_style(source, style, beta=0.0)  # the zero frequency only: the mean moves to the style's
    assert abs(float(out.mean()) - 0.8) < 1e-4
    assert torch.allclose(out - out.mean(), source - source.mean(), atol=1e-4)  # structure kept
    assert torch.allclose(fourier_style(source, source, 0.1), source, atol=1e-5)


def test_rand_fourier_style_is_seeded_and_keeps_the_label(real_files, synthetic):
    def run(seed):
        t = RandFourierStyled(style_images=real_files, prob=1.0, beta=0.05)
        t.set_random_state(seed)
        return t(dict(synthetic))

    a, b = run(0), run(0)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], synthetic["label"])
    assert float(a["image"].min()) >= 0 and float(a["image"].max()) <= 1
    # the vessels are still there: darker than the rest, as before
    vessel = synthetic["label"][0] > 0
    assert a["image"][0][vessel].mean() < a["image"][0][~vessel].mean()


def test_local_intensity_order_codes_a_dark_line():
    x = torch.full((1, 1, 32, 32), 0.5)
    x[..., 16, :] = 0.1  # a dark horizontal line
    codes = local_intensity_order(x)
    assert codes.shape == (1, 4, 32, 32) and codes.min() >= 0 and codes.max() <= 1
    up, down, left, right = codes[0, :, 16, 10]
    assert up == 0 and down == 0 and left == 0 and right == 0  # darker than everything around it
    assert codes[0, 0, 17, 10] == 1 / 255  # just below: brighter than the line one step up only
    # invariant to gain and offset, which is the point of it
    assert torch.equal(local_intensity_order(3 * x + 0.2), codes)


def test_local_contrast_equalises_a_wide_dim_and_a_thin_dark_vessel():
    x = torch.full((1, 1, 128, 128), 0.6)
    x[..., 20:26, :] -= 0.1  # wide, low contrast
    x[..., 80, :] -= 0.5  # thin, five times the contrast
    y = local_contrast(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    wide, thin = float(y[0, 0, 23, 60]), float(y[0, 0, 80, 60])
    assert wide < -0.3 and thin < -0.3  # both clearly dark
    assert wide / thin > 0.5  # their contrasts were 1 : 5
    assert torch.allclose(local_contrast(2 * x + 1), y, atol=1e-2)


def test_input_transform_is_part_of_the_network_and_its_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="input_transform must be one of"):
        InputTransform("clahe")
    net = ViTSegmenter(preset="vit_tiny", img_size=32, feature_size=8, input_transform="local_intensity_order")
    assert net.vit.patch_embedding.patch_embeddings.in_channels == 4 and net.encoder1.layer.conv1.conv.in_channels == 4
    x = torch.rand(2, 1, 32, 32)
    assert net(x).shape == (2, 2, 32, 32)
    scripted = torch.jit.script(net.eval())
    assert torch.allclose(scripted(x), net(x), atol=1e-5)


def test_label_free_overlay_trains_on_synthetic_and_unlabelled_real_frames(tmp_path, real_files):
    root = tmp_path / "bundle"
    wf = run_workflow("xa_vessel_seg", ["train", "label_free"], "train", root, max_epochs=1, real_unlabelled=str(tmp_path / "real_*.png"), composite_prob=1.0, **TRAIN)
    net = load_network(str(root / "models" / "model.pt"))
    assert net.input_transform.name == "local_contrast"  # carried by the checkpoint
    composite = [t for t in wf.parser.get_parsed_content("train#preprocessing").transforms if isinstance(t, CompositeOnRealBackgroundd)]
    assert len(composite) == 1 and sorted(composite[0].pool.files) == sorted(real_files)
    item = wf.parser.get_parsed_content("train#dataset")[0]
    assert "vessel_layer" not in item and set(item["label"].unique().tolist()) <= {0.0, 1.0}


def test_synthetic_training_sees_new_scenes_every_epoch_with_workers():
    from angiokit.data.segmentation import FreshSceneSampler, SyntheticSegmentationDataset, training_sampler

    dataset = SyntheticSegmentationDataset(length=3, image_size=32, seed=4)
    sampler = training_sampler(dataset, seed=1)
    assert isinstance(sampler, FreshSceneSampler)
    # persistent workers hold their own copy of the dataset: the epoch must come with the indices
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=1, persistent_workers=True)
    name = lambda batch: np.ravel(batch["image"].meta["filename_or_obj"])[0]  # noqa: E731
    names = [[name(b) for b in loader] for _ in range(2)]
    assert len(set(names[0]) | set(names[1])) == 6  # 3 scenes, then 3 new ones
    again = training_sampler(SyntheticSegmentationDataset(length=3, image_size=32, seed=4), seed=1)
    assert [list(again), list(again)] == [[int(n.split("_")[2]) * 3 + int(n.split("_")[3]) for n in epoch] for epoch in names]
    fixed = SyntheticSegmentationDataset(length=3, image_size=32, seed=4, fresh=False)
    assert isinstance(training_sampler(fixed), torch.utils.data.RandomSampler)


class _LineFinder(torch.nn.Module):
    """A stand-in teacher: vessel logits where the frame is dark, sure on one frame, unsure on another."""

    def __init__(self, sharpness):
        super().__init__()
        self.sharpness = sharpness

    def forward(self, x):
        v = self.sharpness * (0.2 - x)
        return torch.cat([-v, v], dim=1)


def test_pseudo_labels_keep_the_confident_frames_with_their_vessels(tmp_path):
    import json

    from angiokit.engines.self_training import pseudo_label

    files = [_real_like(tmp_path / f"f{i}.png", i, texture=0.2 * i) for i in range(4)]
    path = pseudo_label(_LineFinder(40.0), files, str(tmp_path / "pseudo"), image_size=96, keep_fraction=0.5, progress=False)
    doc = json.load(open(path))
    assert len(doc["training"]) == 2 and len(doc["scores"]) == 4
    kept = [s for s in doc["scores"] if s["kept"]]
    assert min(s["score"] for s in kept) >= max(s["score"] for s in doc["scores"] if not s["kept"])
    from angiokit.data import read_angiogram

    label = read_angiogram(str(tmp_path / "pseudo" / doc["training"][0]["label"])).frames[0] > 0
    yy, xx = np.mgrid[0:96, 0:96]
    assert label[np.abs(yy - 0.6 * xx - 20) < 1].mean() > 0.9  # the dark line is labelled
    assert label[np.abs(yy - 0.6 * xx - 20) > 10].mean() < 0.3
    unsure = json.load(open(pseudo_label(_LineFinder(0.5), files, str(tmp_path / "unsure"), image_size=96, progress=False)))
    assert max(s["score"] for s in unsure["scores"]) < min(s["score"] for s in kept)  # a hesitant teacher scores low


def test_mixed_dataset_serves_pseudo_labelled_frames_and_fresh_scenes(tmp_path):
    from angiokit.data.segmentation import FreshSceneSampler, MixedSegmentationDataset, segmentation_dataset, training_sampler

    real = [{"image": "a"}, {"image": "b"}]
    mixed = segmentation_dataset(real, transform=None, synthetic_length=2, image_size=32, mix_synthetic=True, vessel_layer=True)
    assert isinstance(mixed, MixedSegmentationDataset) and len(mixed) == 4
    sampler = training_sampler(mixed, seed=0)
    assert isinstance(sampler, FreshSceneSampler)
    epochs = [[mixed[i] for i in sampler] for _ in range(2)]
    names = [sorted(item["image"] if isinstance(item["image"], str) else item["image"].meta["filename_or_obj"] for item in epoch) for epoch in epochs]
    assert names[0][:2] == names[1][:2] == ["a", "b"]  # the real items every epoch
    assert not set(names[0][2:]) & set(names[1][2:])  # new scenes each epoch
    assert all("vessel_layer" in item for item in epochs[0] if not isinstance(item["image"], str))


def test_round_field_of_view_hides_vessels_and_their_labels_outside_it():
    plain = synthesize(default_config(size=96), 2, vessel_layer=True)
    with_field = synthesize(default_config(size=96, circular_field_probability=1.0, circular_field_radius=(0.5, 0.5)), 2, vessel_layer=True)
    yy, xx = np.mgrid[0:96, 0:96]
    corners = (yy - 47.5) ** 2 + (xx - 47.5) ** 2 > (0.5 * 96 + 4) ** 2
    assert with_field.image[0][corners].max() < 0.02  # black outside the disc
    assert with_field.vessel[0][corners].sum() == 0 and with_field.vessel_line_integral[0][corners].sum() == 0
    assert plain.vessel[0][corners].sum() > 0 or plain.vessel_line_integral[0][corners].sum() > 0  # there was something to hide
    inside = ~corners & ((yy - 47.5) ** 2 + (xx - 47.5) ** 2 < (0.5 * 96 - 8) ** 2)
    assert np.array_equal(with_field.vessel[0][inside], plain.vessel[0][inside])  # same scene within the field


def test_the_label_free_experiment_reads_no_test_frame():
    import os

    from apps.experiment import SHARED
    from apps.label_free import PROFILES, unlabelled_frames

    if not os.path.isdir(os.path.join(SHARED, "arcade_stenosis_train")):
        pytest.skip(f"no ARCADE frames under {SHARED}")
    files = unlabelled_frames(PROFILES["default"])
    assert len(files) >= 1000
    assert not [f for f in files if "dca1" in f or "xcad" in f or "arcade_stenosis_test" in f]
