import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from angiokit.data.synthetic import AngiogramScene, SynthConfig, default_config, synthesize
from angiokit.data.synthetic.tube_raster import Tube, rasterize_tubes


def _tube(xy, r, w=1.0, group=0):
    xy = np.asarray(xy, dtype=np.float64)
    n = len(xy)
    return Tube(xy, np.full(n, float(r)), np.full(n, float(w)), np.ones(n, bool), group)


# ---- rasteriser: the Beer-Lambert path length must be exact ---------------------------------


def test_straight_tube_path_length_is_the_chord():
    r = 4.0
    xs = np.linspace(5, 59, 40)  # many segments: joints must not double-count
    line = np.stack([xs, np.full_like(xs, 32.0)], 1)
    path, masks = rasterize_tubes([_tube(line, r, w=0.5)], (64, 64))
    col = path[:, 32].numpy()
    for dy in range(0, 5):
        expected = 0.5 * 2 * np.sqrt(max(r * r - dy * dy, 0.0))
        assert col[32 + dy] == pytest.approx(expected, abs=1e-4)
        assert col[32 - dy] == pytest.approx(expected, abs=1e-4)
    assert masks.shape == (1, 64, 64)
    # pixel centres strictly inside the lumen (d < r) form the mask
    assert masks[0, 29:36, 32].all() and not masks[0, 28, 32] and not masks[0, 36, 32]


def test_crossing_tubes_add_and_masks_keep_their_groups():
    h = _tube([[2, 20], [38, 20]], 3.0, group=0)
    v = _tube([[20, 2], [20, 38]], 2.0, group=1)
    path, masks = rasterize_tubes([h, v], (40, 40), mask_groups=2)
    assert path[20, 20].item() == pytest.approx(6.0 + 4.0, abs=1e-4)
    assert path[20, 5].item() == pytest.approx(6.0, abs=1e-4)
    assert masks[0, 20, 5] and not masks[1, 20, 5]
    assert masks[1, 5, 20] and not masks[0, 5, 20]


def test_thin_tube_mask_stays_connected():
    t = _tube([[3, 3], [60, 40]], 0.2)
    _, masks = rasterize_tubes([t], (64, 64))
    m = masks[0].numpy()
    from scipy.ndimage import label

    assert label(m, structure=np.ones((3, 3)))[1] == 1
    assert m.sum() >= 57  # at least one pixel per column crossed


def test_tubes_outside_the_frame_are_ignored():
    path, masks = rasterize_tubes([_tube([[-50, -50], [-10, -30]], 3.0)], (32, 32))
    assert path.abs().sum() == 0 and not masks.any()


# ---- the engine ---------------------------------------------------------------------------


def test_same_seed_same_pixels_other_seed_other_pixels():
    cfg = SynthConfig(size=96)
    a, b, c = synthesize(cfg, 7), synthesize(cfg, 7), synthesize(cfg, 8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.vessel, b.vessel)
    assert not np.array_equal(a.image, c.image)


def test_shapes_types_and_value_ranges(small_frames):
    for s in small_frames:
        assert s.image.shape == (1, 128, 128) and s.image.dtype == np.float32
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        for m in (s.vessel, s.guidewire, s.catheter):
            assert m.shape == s.image.shape and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
        assert 0.01 < s.vessel.mean() < 0.3
        assert s.pixel_spacing_mm == pytest.approx(130.0 / 128)


def test_vessels_are_darker_than_their_surroundings(small_frames):
    for s in small_frames:
        m = s.vessel[0].astype(bool)
        ring = binary_dilation(m, iterations=3) & ~m & ~s.catheter[0].astype(bool)
        assert s.image[0][m].mean() < s.image[0][ring].mean() - 0.03


def test_radii_and_topologies_are_coronary_like():
    cfg = SynthConfig(size=128)
    sides = set()
    for seed in range(12):
        scene = AngiogramScene(cfg, seed)
        sides.add(scene.tree.side)
        radii = np.concatenate([b.radius_mm for b in scene.tree.branches])
        assert 0.35 <= radii.min() and radii.max() <= 2.6
        assert len(scene.tree.branches) >= 8
    assert sides == {"left", "right"}


def test_guidewire_runs_inside_the_vessels_or_catheter(small_cine):
    s = small_cine
    assert s.meta["has_guidewire"] and s.guidewire.any()
    last = s.frames - 1
    lumen = binary_dilation((s.vessel[last] | s.catheter[last]).astype(bool), iterations=2)
    wire = s.guidewire[last].astype(bool)
    assert (wire & lumen).sum() / wire.sum() > 0.9


def test_cine_washes_in_and_moves(small_cine):
    s = small_cine
    area = s.vessel.reshape(s.frames, -1).mean(1)
    assert area[0] < 0.5 * area.max()  # contrast not there yet at the start
    filled = np.flatnonzero(area > 0.8 * area.max())
    assert len(filled) >= 2
    a, b = s.vessel[filled[0]].astype(bool), s.vessel[filled[-1]].astype(bool)
    iou = (a & b).sum() / (a | b).sum()
    assert iou < 0.999  # the heart beats
    assert s.catheter.any(axis=(1, 2)).all()  # the catheter is there in every frame


def test_contrast_free_frame_keeps_devices_drops_vessels():
    scene = AngiogramScene(SynthConfig(size=96, guidewire_probability=1.0), 2)
    t = scene.frame_time_s(0)
    with_contrast = scene.render(t, contrast=1.0)
    without = scene.render(t, contrast=0.0)
    assert with_contrast[1].any() and not without[1].any()
    assert np.array_equal(with_contrast[3], without[3]) and np.array_equal(with_contrast[2], without[2])
    m = with_contrast[1].astype(bool)
    assert without[0][m].mean() > with_contrast[0][m].mean() + 0.03


def test_config_checks_its_arguments():
    with pytest.raises(ValueError, match="range"):
        SynthConfig(zoom=(1.2, 0.9))
    with pytest.raises(ValueError, match="size"):
        SynthConfig(size=8)
    with pytest.raises(TypeError, match="unknown SynthConfig"):
        default_config(sise=256)


def test_generator_runs_on_the_requested_device():
    s = synthesize(SynthConfig(size=64), seed=1, device="cpu")
    assert s.image.shape == (1, 64, 64)
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available: only the CPU path was checked")
    g = synthesize(SynthConfig(size=64), seed=1, device="cuda")
    assert np.array_equal(g.vessel, s.vessel)
