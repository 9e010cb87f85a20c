"""The synthetic-vs-real gap statistics (angiokit.data.synthetic.gap) on constructed images with
known answers, and once on two real DCA1 frames."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from angiokit.data.synthetic import gap
from angiokit.data.synthetic.stats import noise_sigma
from tests.conftest import shared_data


def bar(width: int, shape=(64, 96), row0: int = 20) -> np.ndarray:
    """A horizontal bar ``width`` px thick, away from the borders."""
    m = np.zeros(shape, dtype=bool)
    m[row0 : row0 + width, 10:-10] = True
    return m


@pytest.mark.parametrize("width", [2, 4, 6, 10])
def test_width_of_a_bar_is_its_thickness(width):
    widths = gap.vessel_widths(bar(width))
    assert len(widths) > 40  # the skeleton runs along the bar
    # even widths measure exactly (the ends of the skeleton are a few pixels)
    assert np.median(widths) == pytest.approx(width, abs=0.01)
    assert gap.width_percentiles(widths)["p50"] == pytest.approx(width, abs=0.01)


def test_width_classes_and_histogram():
    m = bar(2) | bar(10, row0=40)  # one thin and one wide bar, same length
    widths = gap.vessel_widths(m)
    share = gap.width_class_fractions(widths)
    assert share["thin"] == pytest.approx(0.5, abs=0.1) and share["wide"] == pytest.approx(0.5, abs=0.1) and share["medium"] < 0.1
    hist = gap.width_histogram(widths)
    assert hist.sum() == pytest.approx(1.0)
    wmap = gap.vessel_width_map(m)
    assert (wmap[m] > 0).all() and (wmap[~m] == 0).all()
    assert np.median(wmap[20:22, 30]) == pytest.approx(2) and np.median(wmap[40:50, 30]) == pytest.approx(10)


def test_contrast_of_a_dark_line_on_flat_background():
    image = np.full((64, 96), 200.0)
    thin, wide = bar(2), bar(10, row0=40)
    image[thin] = 150.0  # contrast 1 - 150 / 200 = 0.25
    image[wide] = 100.0  # contrast 0.5
    c = gap.contrast_by_width(image, thin | wide)
    assert c["thin"] == pytest.approx(0.25, abs=1e-6)
    assert c["wide"] == pytest.approx(0.5, abs=1e-6)
    assert np.isnan(c["medium"])  # no 3-8 px vessel in this frame
    # centreline pixels give the same for a flat lumen
    centre = gap.contrast_by_width(image, thin | wide, width_map=gap.skeleton_width_map(thin | wide))
    assert centre["wide"] == pytest.approx(0.5, abs=1e-6)
    curve = gap.contrast_vs_width(image, thin | wide)
    assert np.nanmin(curve) == pytest.approx(0.25, abs=1e-6) and np.nanmax(curve) == pytest.approx(0.5, abs=1e-6)


def test_ring_excludes_pixels_outside_the_field():
    image = np.full((64, 96), 200.0)
    line = bar(2)
    image[line] = 150.0
    image[:, :48] = 0.0  # left half unexposed (black); the vessel there is black too
    valid = np.zeros_like(line)
    valid[:, 48:] = True
    right = line & valid
    assert gap.ring_contrast(image, right, line, valid=valid) == pytest.approx(0.25, abs=1e-6)


def test_spectrum_of_white_noise_is_flat_and_smoothing_makes_it_fall():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 3.0, (4, 128, 128))  # averaged over 4 images: a single low-frequency bin holds a few samples
    f = gap.radial_power_spectrum(noise[0])[0]
    p = np.mean([gap.radial_power_spectrum(x)[1] for x in noise], axis=0)
    ok = np.isfinite(p)
    assert np.median(p[ok]) == pytest.approx(9.0, rel=0.15)  # PSD of white noise = its variance
    assert abs(gap.spectral_slope(f, p)) < 0.3
    ps = np.mean([gap.radial_power_spectrum(gaussian_filter(x, 2.0))[1] for x in noise], axis=0)
    assert gap.spectral_slope(f, ps) > 1.0  # a Gaussian fall-off, fitted as a power law over the slope band
    assert gap.band_power(f, ps) < 0.01 * gap.band_power(f, p)  # high frequencies gone


def test_background_spectrum_fills_the_vessels():
    rng = np.random.default_rng(1)
    image = 120.0 + rng.normal(0.0, 1.0, (96, 96))
    mask = np.zeros((96, 96), dtype=bool)
    mask[:, 44:52] = True
    image[mask] = 40.0  # a dark vessel straight through the crop
    _, with_vessel = gap.background_spectrum(image)
    _, background = gap.background_spectrum(image, mask)
    assert gap.band_power(_, with_vessel, (0.02, 0.1)) > 20 * gap.band_power(_, background, (0.02, 0.1))
    filled = gap.fill_masked(image, mask)
    assert abs(filled[mask].mean() - 120.0) < 1.0


def test_noise_sigma_inside_the_field_ignores_a_black_border():
    rng = np.random.default_rng(2)
    image = 100.0 + rng.normal(0.0, 2.0, (80, 80))
    assert gap.noise_sigma_in(image) == pytest.approx(noise_sigma(image), rel=1e-5)
    image[:, :40] = 0.0  # the left half unexposed: no noise there
    valid = np.ones_like(image, dtype=bool)
    valid[:, :40] = False
    assert gap.noise_sigma_in(image, valid) == pytest.approx(2.0, rel=0.1)
    assert gap.noise_sigma_in(image) < 1.2  # diluted by the noise-free border without the mask


def test_field_of_view_finds_a_disc():
    n, r = 120, 50.0
    yy, xx = np.mgrid[:n, :n]
    image = np.where((yy - 60) ** 2 + (xx - 60) ** 2 <= r**2, 150.0, 8.0)
    image = image + np.random.default_rng(3).normal(0, 1.0, image.shape)
    fov = gap.detect_field_of_view(image)
    assert fov.circular
    assert fov.outside_fraction == pytest.approx(1 - np.pi * r**2 / n**2, abs=0.02)
    cy, cx, radius = fov.circle
    assert (cy, cx, radius) == pytest.approx((60, 60, r), abs=1.5)


def test_field_of_view_clipped_disc_border_band_and_full_frame():
    n = 120
    yy, xx = np.mgrid[:n, :n]
    clipped = np.where((yy - 60) ** 2 + (xx - 60) ** 2 <= 75.0**2, 150.0, 8.0)  # only the corners are dark
    fov = gap.detect_field_of_view(clipped)
    assert fov.circular and 0.02 < fov.outside_fraction < 0.15
    band = np.full((n, n), 150.0)
    band[:12] = 5.0  # a collimator / border band along the top
    fov = gap.detect_field_of_view(band)
    assert fov.shape == "other" and fov.outside_fraction == pytest.approx(0.1, abs=0.02)
    flat = np.full((n, n), 150.0)
    flat[50:70, 50:70] = 5.0  # dark but not touching the border: inside the field
    fov = gap.detect_field_of_view(flat)
    assert fov.shape == "full" and fov.outside_fraction == 0.0 and fov.inside.all()


def test_two_dca1_frames():
    root = shared_data("dca1")
    from angiokit.data.readers import load_frame

    for name in ("tr_01.png", "te_01.png"):
        image = load_frame(str(root / "images" / name))[0]
        mask = load_frame(str(root / "masks" / name))[0] > 127
        widths = gap.vessel_widths(mask)
        p = gap.width_percentiles(widths)
        assert 2.0 <= p["p5"] <= p["p50"] <= p["p95"] <= 30.0  # DCA1 vessels at 300 px: a few px wide
        fov = gap.detect_field_of_view(image)
        assert 0.0 <= fov.outside_fraction < 0.5
        c = gap.contrast_by_width(image, mask, valid=fov.inside)
        assert all(0.0 < v < 0.6 for v in c.values() if np.isfinite(v))  # vessels darker than their ring
        assert 0.1 < gap.noise_sigma_in(image, fov.inside) < 5.0
        f, psd = gap.background_spectrum(image, mask, fov.inside)
        assert np.isfinite(gap.spectral_slope(f, psd))
        assert gap.band_power(f, psd, (0.01, 0.03)) > 10 * gap.band_power(f, psd)  # natural images fall off


def test_tuning_only_sets_hold_no_test_frame():
    """The label-free preset is fitted with ``--tuning_only``: DCA1's training frames and the
    unlabelled sets, never a DCA1 test frame or an XCAD frame."""
    from apps.synth_gap import frame_sets

    data = shared_data("dca1").parent
    tuning = frame_sets(str(data), n=2, seed=0, limit=None, tuning_only=True)
    real = [ref[0] for s in tuning if not s.name.startswith("synthetic") for ref in s.refs]
    dca1 = [os.path.basename(p) for p in real if f"{os.sep}dca1{os.sep}" in p]
    assert len(dca1) == 40 and all(n.startswith("tr_") for n in dca1)
    assert not [p for p in real if "xcad" in p or "arcade_stenosis_test" in p]
    everything = frame_sets(str(data), n=2, seed=0, limit=None)
    assert {"DCA1", "XCAD"} <= {s.name for s in everything}  # the full comparison still has both
