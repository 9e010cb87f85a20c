"""MC-dropout uncertainty scores used by the MONAI Label app's active learning."""

import json

import numpy as np
import pytest
import torch

from angiokit.data.errors import AngioDataError
from angiokit.data.quality import METRICS, rating_target, read_rating
from angiokit.data.quality_dataset import auxiliary_paths, is_auxiliary
from angiokit.metrics.uncertainty import mc_dropout_scores, predictive_entropy, thin_vessel_region


def _vessels(size=64):
    """A wide vessel (radius 5) across the top and a thin branch (radius 1) across the bottom."""
    p = np.zeros((size, size), np.float32)
    p[10:21, :] = 1.0
    p[49:52, :] = 1.0
    return p


def test_thin_vessel_region_keeps_the_thin_branch_and_drops_the_wide_vessel():
    region = thin_vessel_region(_vessels())
    assert region[50, 32] and region[48, 32]  # the branch and its rim
    assert not region[15, 32]  # the centre of the wide vessel
    assert not region[35, 32]  # background far from both
    assert not thin_vessel_region(np.zeros((16, 16))).any()


def test_branch_entropy_rises_with_uncertainty_on_thin_branches_only():
    vessel = torch.from_numpy(_vessels())
    certain = torch.stack([1 - vessel, vessel])  # [2, H, W]
    samples = certain.expand(4, -1, -1, -1).clone()
    assert predictive_entropy(samples).max() < 1e-5
    # two of four samples miss the thin branch: uncertain there, certain elsewhere
    unsure = samples.clone()
    unsure[:2, 1, 49:52, :] = 0.0
    unsure[:2, 0, 49:52, :] = 1.0
    base, branch = mc_dropout_scores(samples), mc_dropout_scores(unsure)
    assert branch["branch_entropy"] > 0.2 and base["branch_entropy"] < 1e-5
    assert branch["branch_entropy"] > 5 * branch["epistemic_entropy"]  # concentrated where it matters
    assert 0 < branch["thin_vessel_fraction"] < 0.3


def test_rating_files_are_checked_and_become_training_targets(tmp_path):
    good = tmp_path / "r.json"
    good.write_text(json.dumps({"guidewire": 4, "branch": 2.5, "artifact": 5, "comment": "ok"}))
    scores = read_rating(str(good))
    assert scores == {"guidewire": 4.0, "branch": 2.5, "artifact": 5.0}
    target = np.asarray(rating_target(scores))
    assert target.shape == (len(METRICS), 6)
    np.testing.assert_allclose(target[:, :5].sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(target[:, 5], [4.0, 2.5, 5.0])
    for text, problem in [("{not json", "not a JSON"), ("[1, 2]", "JSON object"), ('{"guidewire": 3}', "lacks"), ('{"guidewire": 3, "branch": 6, "artifact": 1}', "outside 1-5"), ('{"guidewire": "x", "branch": 2, "artifact": 1}', "not a number")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(AngioDataError, match=problem) as e:
            read_rating(str(bad))
        assert "bad.json" in str(e.value)


def test_auxiliary_images_are_found_by_the_naming_rule(tmp_path):
    for name in ["case1.png", "case1_aux_fluoro.png", "scan.nii.gz", "scan_aux_reference.nii.gz"]:
        (tmp_path / name).write_bytes(b"")
    assert auxiliary_paths(str(tmp_path / "case1.png")) == {"fluoro": str(tmp_path / "case1_aux_fluoro.png"), "reference": ""}
    assert auxiliary_paths(str(tmp_path / "scan.nii.gz")) == {"fluoro": "", "reference": str(tmp_path / "scan_aux_reference.nii.gz")}
    assert is_auxiliary(str(tmp_path / "case1_aux_fluoro.png")) and not is_auxiliary(str(tmp_path / "case1.png"))
