import numpy as np
import pytest
import torch
from skimage.morphology import skeletonize

from angiokit.metrics import ClDiceMetric, VesselDiceMetric, cldice_score, dice_score


def _bar(rows=slice(9, 12), cols=slice(4, 60), shape=(24, 64)):
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


def test_identical_masks_score_one():
    g = _bar()
    assert dice_score(g, g) == 1.0 and cldice_score(g, g) == 1.0


def test_one_pixel_shift_of_a_thin_vessel_hurts_dice_not_cldice():
    g, p = _bar(), _bar(rows=slice(10, 13))
    assert dice_score(p, g) == pytest.approx(2 * 2 / 6, abs=1e-6)  # 2 of 3 rows overlap
    assert cldice_score(p, g) == pytest.approx(1.0, abs=0.02)  # each centreline still lies in the other (ends aside)


def test_broken_vessel_costs_topology_sensitivity():
    g = _bar()
    p = g.copy()
    p[:, 30:36] = False  # a 6-pixel gap
    skeleton = skeletonize(g)
    t_sens = (skeleton & p).sum() / skeleton.sum()
    assert cldice_score(p, g) == pytest.approx(2 * t_sens / (1 + t_sens))  # Tprec stays 1
    assert cldice_score(p, g) < 1.0
    assert dice_score(p, g) == pytest.approx(2 * p.sum() / (p.sum() + g.sum()))


def test_empty_masks_follow_the_documented_convention():
    empty, g = np.zeros((16, 16), bool), _bar(shape=(16, 64))[:, :16]
    assert dice_score(empty, empty) == 1.0 and cldice_score(empty, empty) == 1.0
    assert dice_score(empty, g) == 0.0 and cldice_score(empty, g) == 0.0
    assert dice_score(g, empty) == 0.0 and cldice_score(g, empty) == 0.0


def test_monai_metrics_accumulate_and_drop_background():
    g = torch.from_numpy(_bar()).float()
    p = torch.from_numpy(_bar(rows=slice(10, 13))).float()
    onehot = lambda m: torch.stack([1 - m, m])[None]  # noqa: E731
    dice, cl = VesselDiceMetric(), ClDiceMetric()
    for metric in (dice, cl):
        metric(y_pred=onehot(g), y=onehot(g))
        metric(y_pred=onehot(p), y=onehot(g))
    assert dice.get_buffer().shape == (2, 1)
    assert dice.aggregate().item() == pytest.approx((1 + 2 / 3) / 2, abs=1e-5)
    assert cl.aggregate().item() == pytest.approx(1.0, abs=0.01)
    single = VesselDiceMetric()
    single(y_pred=p[None, None], y=g[None, None])
    assert single.aggregate().item() == pytest.approx(2 / 3, abs=1e-5)
    with pytest.raises(ValueError, match="same"):
        single(y_pred=p[None, None], y=g[None, None, :, :10])


def test_metrics_plug_into_a_monai_evaluator():
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine
    from monai.handlers.ignite_metric import IgniteMetricHandler

    g = torch.from_numpy(_bar()).float()[None]
    data = [{"image": g, "label": g}] * 2
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=torch.utils.data.DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),
        key_val_metric={"val_cldice": IgniteMetricHandler(metric_fn=ClDiceMetric(), output_transform=from_engine(["pred", "label"]))},
    )
    evaluator.run()
    assert evaluator.state.metrics["val_cldice"] == pytest.approx(1.0)
