import numpy as np
import pytest
import torch

from angiokit.metrics import DetectionAPMetric, bootstrap_detection, detection_metrics, paired_detection_difference, plot_pr_curves
from angiokit.metrics.detection import _MatchedSet


def _box(x, y, w=10.0, h=10.0):
    return [x, y, x + w, y + h]


def _pred(boxes, scores, labels=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return {"boxes": boxes, "scores": np.asarray(scores, dtype=float), "labels": np.zeros(len(boxes), int) if labels is None else np.asarray(labels)}


def _gt(boxes, labels=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return {"boxes": boxes, "labels": np.zeros(len(boxes), int) if labels is None else np.asarray(labels)}


def _random_set(n, seed, n_classes=1, hit=0.8, jitter=3.0, false_positives=3):
    """Random ground truth; predictions find most of it (jittered boxes) plus a few stray boxes."""
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n):
        m = rng.integers(0, 4)
        xy = rng.uniform(0, 400, (m, 2))
        g = np.concatenate([xy, xy + rng.uniform(10, 40, (m, 2))], 1)
        gl = rng.integers(0, n_classes, m)
        found = rng.random(m) < hit
        j = g[found] + rng.normal(0, jitter, (int(found.sum()), 4))
        j[:, 2:] = np.maximum(j[:, 2:], j[:, :2] + 1)
        k = rng.integers(0, false_positives + 1)
        fxy = rng.uniform(0, 400, (k, 2))
        boxes = np.concatenate([j, np.concatenate([fxy, fxy + 20], 1)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(j)), rng.uniform(0.0, 0.8, k)])
        preds.append(_pred(boxes, scores, np.concatenate([gl[found], rng.integers(0, n_classes, k)])))
        gts.append(_gt(g, gl))
    return preds, gts


# Hand-worked case. Image A has ground truth g1, g2; image B has g3 (3 boxes). Detections, best
# first: 0.9 on g1 (TP), 0.8 stray in A (FP), 0.7 on g3 (TP), 0.6 stray in B (FP), 0.5 on g2 (TP).
#   cumulative TP 1 1 2 2 3, FP 0 1 1 2 2 -> recall 1/3 1/3 2/3 2/3 1, precision 1 1/2 2/3 1/2 3/5
#   envelope (max precision at this recall or beyond): 1 2/3 2/3 3/5 3/5
#   COCO reads the envelope at recall r = 0, 0.01, ..., 1 (first point with recall >= r):
#   r <= 0.33 (34 points) -> 1; 0.34..0.66 (33) -> 2/3; 0.67..1 (34) -> 3/5
#   AP = (34 * 1 + 33 * 2/3 + 34 * 3/5) / 101 = 76.4 / 101
# TP boxes equal their ground truth (IoU 1), strays overlap nothing: the same AP at every IoU.
HAND_AP = 76.4 / 101


def _hand_case():
    g1, g2, g3 = _box(10, 10), _box(50, 50), _box(20, 30)
    preds = [_pred([g1, _box(200, 200), g2], [0.9, 0.8, 0.5]), _pred([g3, _box(300, 100)], [0.7, 0.6])]
    return preds, [_gt([g1, g2]), _gt([g3])]


def test_hand_worked_ap():
    m = detection_metrics(*_hand_case())
    for key in ("AP50", "AP75", "mAP"):
        assert m[key] == pytest.approx(HAND_AP, abs=1e-6)
    assert m["num_images"] == 2 and m["num_boxes"] == 3
    curve = m["pr_curve"]
    assert len(curve["recall"]) == len(curve["precision"]) == 101
    assert np.mean(curve["precision"]) == pytest.approx(m["AP50"], abs=1e-12)
    assert curve["precision"][0] == pytest.approx(1.0) and curve["precision"][-1] == pytest.approx(0.6)


def test_torch_inputs_match_numpy():
    preds, gts = _hand_case()
    tp = [{k: torch.as_tensor(v) for k, v in p.items()} for p in preds]
    tg = [{k: torch.as_tensor(v) for k, v in g.items()} for g in gts]
    assert detection_metrics(tp, tg)["AP50"] == pytest.approx(HAND_AP, abs=1e-6)


def test_perfect_none_and_shifted():
    gts = [_gt([_box(10, 10), _box(60, 60)]), _gt([_box(5, 40, 20, 8)])]
    perfect = [_pred(g["boxes"], [0.9] * len(g["boxes"])) for g in gts]
    m = detection_metrics(perfect, gts)
    assert m["mAP"] == m["AP50"] == m["AP75"] == pytest.approx(1.0)
    assert m["recall_at_1fp"] == m["recall_at_10fp"] == 1.0

    none = [_pred(np.zeros((0, 4)), []) for _ in gts]
    m = detection_metrics(none, gts)
    assert m["mAP"] == m["AP50"] == m["AP75"] == m["recall_at_1fp"] == 0.0

    # ground truth 10 x 10, prediction its top 10 x 6: IoU 60 / 100 = 0.6
    m = detection_metrics([_pred([[0, 0, 10, 6]], [0.9])], [_gt([[0, 0, 10, 10]])])
    assert m["AP50"] == pytest.approx(1.0) and m["AP75"] == 0.0
    # IoU 0.62 counts at 0.50, 0.55 and 0.60: mAP 3 / 10
    m = detection_metrics([_pred([[0, 0, 10, 6.2]], [0.9])], [_gt([[0, 0, 10, 10]])])
    assert m["mAP"] == pytest.approx(0.3)


def test_recall_at_false_positives_per_image():
    # 4 images, one ground-truth box each. Detections, best first (TP = on a ground truth):
    #   .95 TP, .90 FP, .85 FP, .80 FP, .75 TP, .70 FP, .65 FP, .60 TP; the 4th box is never found.
    # 1 FP / image = at most 4 FPs: the cut after .70 (TP 2, FP 4) -> recall 2/4.
    # 10 FP / image: everything passes -> recall 3/4.
    g = [_box(10 * i, 10 * i) for i in range(4)]
    far = [_box(300, 20 * i) for i in range(6)]
    preds = [
        _pred([g[0], far[0], far[1]], [0.95, 0.90, 0.70]),
        _pred([far[2], g[1]], [0.85, 0.75]),
        _pred([far[3], far[4], g[2]], [0.80, 0.65, 0.60]),
        _pred(np.zeros((0, 4)), []),
    ]
    m = detection_metrics(preds, [_gt([b]) for b in g])
    assert m["recall_at_1fp"] == pytest.approx(0.5) and m["recall_at_10fp"] == pytest.approx(0.75)

    # tied scores pass together: a stray (.9), then a TP and a stray both at .8, on one image:
    # at most 1 FP lets through only the .9 stray -> recall 0
    m = detection_metrics([_pred([_box(200, 200), _box(0, 0), _box(100, 100)], [0.9, 0.8, 0.8])], [_gt([_box(0, 0)])])
    assert m["recall_at_1fp"] == 0.0 and m["recall_at_10fp"] == 1.0


def test_empty_images():
    preds, gts = _hand_case()
    # images with nothing, or only stray predictions, or unfound ground truth, mixed in
    preds2 = preds + [_pred(np.zeros((0, 4)), []), _pred([_box(0, 300)], [0.1]), _pred(np.zeros((0, 4)), [])]
    gts2 = gts + [_gt(np.zeros((0, 4))), _gt(np.zeros((0, 4))), _gt([_box(200, 300)])]
    m = detection_metrics(preds2, gts2)
    assert m["num_images"] == 5 and m["num_boxes"] == 4
    assert 0.0 < m["AP50"] < HAND_AP
    # no ground truth anywhere: AP undefined
    m = detection_metrics([_pred([_box(0, 0)], [0.5])], [_gt(np.zeros((0, 4)))])
    assert np.isnan(m["AP50"]) and np.isnan(m["recall_at_1fp"]) and m["pr_curve"] == {"recall": [], "precision": []}
    # no images at all
    assert np.isnan(detection_metrics([], [])["mAP"])
    # torch tensors of zero boxes
    empty = {"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    m = detection_metrics([empty], [{"boxes": torch.tensor([_box(0, 0)]), "labels": torch.tensor([0])}])
    assert m["AP50"] == 0.0


def test_bad_input_raises():
    with pytest.raises(ValueError):
        detection_metrics([_pred([[10, 10, 5, 20]], [0.5])], [_gt([_box(0, 0)])])  # x2 < x1: not xyxy
    with pytest.raises(ValueError):
        detection_metrics([_pred([_box(0, 0)], [0.5], [1])], [_gt([_box(0, 0)])])  # label 1 with one class


def test_several_classes_average_classes_with_ground_truth():
    preds, gts = _random_set(40, seed=5, n_classes=2)
    both = detection_metrics(preds, gts, class_names=("a", "b"))
    per = []
    for c in (0, 1):
        pc = [_pred(p["boxes"][p["labels"] == c], p["scores"][p["labels"] == c]) for p in preds]
        gc = [_gt(g["boxes"][g["labels"] == c]) for g in gts]
        per.append(detection_metrics(pc, gc))
    for key in ("mAP", "AP50", "AP75", "recall_at_1fp"):
        assert both[key] == pytest.approx(np.mean([p[key] for p in per]), abs=1e-9)
    # a third class with no ground truth is left out of the mean
    three = detection_metrics(preds, gts, class_names=("a", "b", "c"))
    assert three["AP50"] == pytest.approx(both["AP50"], abs=1e-12)


@pytest.mark.parametrize("n_classes", [1, 2])
def test_fast_resample_ap_equals_coco_metric(n_classes):
    preds, gts = _random_set(60, seed=11, n_classes=n_classes)
    names = tuple("abc"[:n_classes])
    matched = _MatchedSet(preds, gts, names, 100)
    full = detection_metrics(preds, gts, class_names=names)
    fast_full = matched.sample_metrics(np.arange(60))
    for key in ("mAP", "AP50", "AP75", "recall_at_1fp", "recall_at_10fp"):
        assert fast_full[key] == pytest.approx(full[key], abs=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.integers(0, 60, 60)
        fast = matched.sample_metrics(idx)
        # COCOMetric on the resampled images, matched afresh
        ref = detection_metrics([preds[i] for i in idx], [gts[i] for i in idx], class_names=names)
        for key in ("mAP", "AP50", "AP75", "recall_at_1fp", "recall_at_10fp"):
            assert fast[key] == pytest.approx(ref[key], abs=1e-9), key
        if n_classes == 1:  # and COCOMetric's own mean over the reused matches
            values, _ = matched.coco([matched.matched[i] for i in idx])
            assert fast["AP50"] == pytest.approx(values["AP_IoU_0.50_MaxDet_100"], abs=1e-9)
            assert fast["mAP"] == pytest.approx(values["mAP_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-9)


def test_bootstrap():
    preds, gts = _random_set(80, seed=2)
    full = detection_metrics(preds, gts)
    b = bootstrap_detection(preds, gts, n_resamples=300, seed=1, keys=("AP50", "mAP", "recall_at_1fp"))
    for key, r in b.items():
        assert r["value"] == full[key]
        assert r["low"] <= r["value"] <= r["high"] and r["low"] < r["high"]
    assert bootstrap_detection(preds, gts, n_resamples=300, seed=1, keys=("AP50", "mAP", "recall_at_1fp")) == b
    assert bootstrap_detection(preds, gts, n_resamples=300, seed=2)["AP50"] != b["AP50"]
    with pytest.raises(ValueError):
        bootstrap_detection(preds, gts, keys=("AP30",))


def test_paired_difference():
    preds, gts = _random_set(60, seed=3)
    same = paired_detection_difference(preds, preds, gts, n_resamples=200)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    # B: the same detections with scores shuffled within each image and strays ranked high
    rng = np.random.default_rng(4)
    worse = [_pred(p["boxes"], rng.permutation(p["scores"]) ** 0.2) for p in preds]
    d = paired_detection_difference(preds, worse, gts, key="AP50", n_resamples=200)
    assert d["difference"] == pytest.approx(detection_metrics(preds, gts)["AP50"] - detection_metrics(worse, gts)["AP50"])
    assert d["difference"] > 0 and d["low"] <= d["difference"] <= d["high"]


def test_pr_figure_is_a_png(tmp_path):
    from PIL import Image

    preds, gts = _random_set(30, seed=6)
    a, b = detection_metrics(preds, gts), detection_metrics(*_hand_case())
    path = tmp_path / "figs" / "pr.png"
    out = plot_pr_curves({"model A": a, "model B": b["pr_curve"]}, path, title="stenosis PR")
    assert out == str(path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert sorted(p.name for p in path.parent.iterdir()) == ["pr.png"]  # no temporary left behind


def test_ignite_handler_two_iterations():
    from ignite.engine import Engine
    from monai.handlers import IgniteMetricHandler

    preds, gts = _random_set(8, seed=7)
    batches = [(preds[:4], gts[:4]), (preds[4:], gts[4:])]
    engine = Engine(lambda e, batch: {"pred": batch[0], "label": batch[1]})
    metric = DetectionAPMetric()
    IgniteMetricHandler(metric_fn=metric, output_transform=lambda o: (o["pred"], o["label"])).attach(engine, "AP50")
    expected = detection_metrics(preds, gts)
    for _ in range(2):  # the handler resets at each run's start
        engine.run(batches, max_epochs=1)
        assert engine.state.metrics["AP50"] == pytest.approx(expected["AP50"], abs=1e-6)
        assert metric.results["mAP"] == pytest.approx(expected["mAP"])
        details = engine.state.metric_details["AP50"]  # per image [num ground-truth boxes, num predictions]
        assert details.shape == (8, 2) and details[:, 0].tolist() == [len(g["labels"]) for g in gts]
    metric.reset()
    metric(preds[0], gts[0])  # one image as bare dicts
    assert float(metric.aggregate()) == pytest.approx(detection_metrics(preds[:1], gts[:1])["AP50"], abs=1e-6, nan_ok=True)
