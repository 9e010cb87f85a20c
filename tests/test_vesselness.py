import numpy as np
import pytest
import torch
from skimage.filters import frangi, sato

from angiokit.transforms import CoarseVesselMaskd, VesselnessPriord, coarse_vessel_mask, vesselness
from angiokit.transforms.coarse_mask import _strongest_component_scipy, _strongest_component_torch, percentile_threshold

MARGIN = 8  # skimage's border ridge (see angiokit.transforms.vesselness) is left out


def _interior(a):
    return a[MARGIN:-MARGIN, MARGIN:-MARGIN]


def _top_iou(a, b, q=92.0):
    ma, mb = a > np.percentile(a, q), b > np.percentile(b, q)
    return (ma & mb).sum() / (ma | mb).sum()


@pytest.fixture(scope="module")
def angiograms():
    from angiokit.data.synthetic import SynthConfig, synthesize

    return [synthesize(SynthConfig(size=192), seed=40 + i).image[0] * 255 for i in range(4)]


def test_sato_agrees_with_skimage(angiograms):
    batch = torch.from_numpy(np.stack(angiograms))
    ours = vesselness(batch, sigmas=(1, 2, 3, 4)).numpy()  # one batched call
    for img, mine in zip(angiograms, ours):
        ref = sato(img, sigmas=range(1, 5), black_ridges=True)
        r = np.corrcoef(_interior(ref).ravel(), _interior(mine).ravel())[0, 1]
        assert r >= 0.95
        assert _top_iou(_interior(ref), _interior(mine)) >= 0.9
        assert mine.mean() == pytest.approx(ref.mean(), rel=0.1)  # same units, not just correlated


def test_frangi_and_bright_ridges_follow_skimage(angiograms):
    img = angiograms[0]
    # same structureness scale: skimage's automatic gamma (half the largest Hessian norm) is
    # set by its border ridge, which we do not reproduce
    ours = vesselness(torch.from_numpy(img), method="frangi", gamma=10.0).numpy()
    ref = frangi(img, sigmas=range(1, 5), black_ridges=True, gamma=10.0)
    assert np.corrcoef(_interior(ref).ravel(), _interior(ours).ravel())[0, 1] >= 0.95
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    bright = vesselness(torch.from_numpy(-img), black_ridges=False).numpy()
    assert np.allclose(bright, vesselness(torch.from_numpy(img)).numpy(), atol=1e-3)


def test_a_dark_line_lights_up_at_its_own_scale():
    img = np.full((64, 64), 100.0, np.float32)
    img[30:34, 8:56] = 40.0  # 4-pixel dark vessel
    v = vesselness(torch.from_numpy(img)).numpy()
    assert v[31:33, 20:44].min() > 5 * v[5:15, 20:44].max()
    assert vesselness(torch.from_numpy(img), black_ridges=False).numpy()[31:33, 20:44].max() < 1e-3


def test_shapes_and_argument_checks():
    x = torch.rand(2, 1, 40, 48)
    assert vesselness(x).shape == x.shape and vesselness(x[:, 0]).shape == (2, 40, 48)
    with pytest.raises(ValueError, match="method"):
        vesselness(x, method="hessian")
    with pytest.raises(ValueError, match="expected"):
        vesselness(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        vesselness(torch.rand(1, 1, 8, 8), sigmas=(4,))


def test_coarse_mask_keeps_the_component_with_the_maximum():
    prior = torch.zeros(1, 32, 32)
    prior[0, 2:6, 2:30] = 1.0  # strong vessel
    prior[0, 20:24, 2:30] = 0.5  # weaker, separate vessel
    prior[0, 4, 15] = 2.0
    strongest = coarse_vessel_mask(prior, percentile=70)
    everything = coarse_vessel_mask(prior, percentile=70, keep="all")
    assert strongest[0, 2:6, 2:30].all() and not strongest[0, 20:24].any()
    assert everything[0, 20:24, 2:30].all()
    assert not coarse_vessel_mask(torch.ones(1, 16, 16)).any()  # flat prior: nothing stands out


def test_torch_and_scipy_components_agree(angiograms):
    prior = vesselness(torch.from_numpy(np.stack(angiograms)))
    above = prior > percentile_threshold(prior, 92)
    seeds = prior.reshape(len(prior), -1).argmax(1)
    assert torch.equal(_strongest_component_scipy(above, seeds), _strongest_component_torch(above, seeds))


def test_monai_dict_transforms_add_prior_and_coarse_mask(angiograms):
    from monai.data import MetaTensor

    sample = {"image": MetaTensor(torch.from_numpy(angiograms[1])[None])}
    out = CoarseVesselMaskd("prior")(VesselnessPriord("image")(sample))
    assert out["prior"].shape == (1, 192, 192) and float(out["prior"].max()) == pytest.approx(1.0)
    m = out["coarse_mask"]
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0} and 0.005 < float(m.mean()) <= 0.08
    assert "image" in out and out["image"] is sample["image"]
