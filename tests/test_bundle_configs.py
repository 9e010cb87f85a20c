"""The bundles' transform pipelines are config components, one ``_target_`` per transform, so a
MONAI user can override one of them by ID (``--train#preprocessing#transforms#4#prob 0``) as in
the model-zoo bundles."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from angiokit.data.writers import write_png

from .bundle_utils import config
from .conftest import REPO

# (bundle, config files, pipeline ID)
PIPELINES = [
    ("xa_vessel_seg", ["train"], "train#preprocessing"),
    ("xa_vessel_seg", ["train"], "validate#preprocessing"),
    ("xa_vessel_seg", ["train"], "validate#postprocessing"),  # the training iterations post-process the whole batch (batch_one_hot)
    ("xa_vessel_seg", ["inference"], "preprocessing"),
    ("xa_vessel_seg", ["inference"], "postprocessing"),
    ("vasomim_pretrain", ["train"], "train#preprocessing"),
    ("vasomim_pretrain", ["inference"], "preprocessing"),
    ("cas_iqa", ["train"], "train#preprocessing"),
    ("cas_iqa", ["train"], "validate#preprocessing"),
    ("cas_iqa", ["inference"], "preprocessing"),
]
SEEDS = range(16)


def _parser(bundle, names, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(config(bundle, *names))
    parser.update({"image_size": 32, **overrides})  # tiny; the shipped default stays 224
    parser.parse()  # resolves the % macros
    return parser


def _tensors(d: dict) -> dict:
    return {k: torch.as_tensor(v).clone() for k, v in d.items() if isinstance(v, torch.Tensor)}


def _outputs(transform, item: dict, seeds=SEEDS) -> list:
    outs = []
    for seed in seeds:
        transform.set_random_state(seed)
        outs.append(_tensors(transform(dict(item))))
    return outs


def _assert_same(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        assert sorted(x) == sorted(y)
        for key in x:
            assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> dict:
    root, rng, paths = tmp_path_factory.mktemp("frames"), np.random.default_rng(0), {}
    for name in ("image", "label", "prior", "fluoro", "reference"):
        pixels = rng.integers(0, 256, (40, 52)).astype(np.uint8)  # not square: a swapped axis shows
        if name == "label":
            pixels = np.where(pixels > 180, 255, 0).astype(np.uint8)
        paths[name] = str(root / f"{name}.png")
        write_png(paths[name], pixels)
    return paths


@pytest.mark.parametrize("bundle,names,pipeline", PIPELINES)
def test_every_transform_is_a_component_reachable_by_id(bundle, names, pipeline):
    parser = _parser(bundle, names)
    steps = parser.get(f"{pipeline}#transforms")
    assert parser.get(f"{pipeline}#_target_") == "Compose" and isinstance(steps, list) and steps
    for i, step in enumerate(steps):
        assert isinstance(step, dict) and "_target_" in parser.get(f"{pipeline}#transforms#{i}"), f"{bundle} {pipeline}#transforms#{i}: expected a _target_ component, got {step!r}"
    built = parser.get_parsed_content(pipeline, instantiate=True)
    assert len(built.transforms) == len(steps)


def test_no_config_builds_a_pipeline_in_a_python_call():
    factory = re.compile(r"\$[^\"]*(transforms|Compose)\(")
    for path in sorted((REPO / "bundles").glob("*/configs/*.json")):
        text = path.read_text()
        json.loads(text)
        assert not factory.search(text), f"{path}: expected transforms spelled out as _target_ components, found {factory.search(text).group(0)!r}"


# the pipelines angiokit still builds for code without a bundle: the configs spell out the same
# transforms, so the same seed gives the same sample
@pytest.mark.parametrize("keys", [("image",), ("image", "prior")])
def test_pretrain_pipelines_match_pretrain_transforms(pngs, keys):
    from angiokit.data.pretrain import pretrain_transforms

    item = {k: pngs[k] for k in keys}
    for names, pipeline, augment in ((["train"], "train#preprocessing", True), (["inference"], "preprocessing", False)):
        built = _parser("vasomim_pretrain", names).get_parsed_content(pipeline, instantiate=True)
        _assert_same(_outputs(built, item), _outputs(pretrain_transforms(32, keys, augment), item))


@pytest.mark.parametrize("fluoro", ["present", "missing"])
def test_quality_pipelines_match_quality_transforms(pngs, fluoro):
    from angiokit.data.quality_dataset import quality_transforms

    item = {"image": pngs["image"], "fluoro": pngs["fluoro"] if fluoro == "present" else "", "reference": pngs["reference"], "target": [[0.2] * 6] * 3}
    train = _parser("cas_iqa", ["train"], scores_csv="unused.csv")
    cases = [(train, "train#preprocessing", True), (train, "validate#preprocessing", False), (_parser("cas_iqa", ["inference"]), "preprocessing", False)]
    for parser, pipeline, augment in cases:
        built = parser.get_parsed_content(pipeline, instantiate=True)
        _assert_same(_outputs(built, item), _outputs(quality_transforms(32, augment), item))


# the random transforms of the segmentation training pipeline: flip, rotation/scaling, contrast, noise
@pytest.mark.parametrize("index,target", [(4, "RandFlipd"), (5, "RandAffined"), (6, "RandAdjustContrastd"), (7, "RandGaussianNoised")])
def test_overriding_one_transform_by_id_changes_only_that_transform(pngs, index, target):
    default = _parser("xa_vessel_seg", ["train"])
    changed = _parser("xa_vessel_seg", ["train"], **{f"train#preprocessing#transforms#{index}#prob": 0})
    before, after = default.get("train#preprocessing#transforms"), changed.get("train#preprocessing#transforms")
    assert after[index]["_target_"] == target and after[index]["prob"] == 0 and before[index]["prob"] > 0
    assert {**after[index], "prob": before[index]["prob"]} == before[index]
    assert [s for i, s in enumerate(after) if i != index] == [s for i, s in enumerate(before) if i != index]
    assert changed.get("validate#preprocessing") == default.get("validate#preprocessing")

    item = {"image": pngs["image"], "label": pngs["label"]}
    full = default.get_parsed_content("train#preprocessing", instantiate=True)
    override = changed.get_parsed_content("train#preprocessing", instantiate=True)
    assert override.transforms[index].prob == 0
    fired = 0
    for seed in SEEDS:
        # the default pipeline, seeded alike, with that one transform skipped
        full.set_random_state(seed)
        without = dict(item)
        for i, t in enumerate(full.transforms):
            without = without if i == index else t(without)
        with_it = _outputs(full, item, [seed])
        _assert_same(_outputs(override, item, [seed]), [_tensors(without)])
        fired += not torch.equal(with_it[0]["image"], _tensors(without)["image"])
    assert fired  # the default pipeline does apply it on some seeds


def test_the_bundle_command_line_override_reaches_the_transform(tmp_path):
    # what `python -m monai.bundle run ... --train#preprocessing#transforms#4#prob 0` builds, with a
    # `run` that reports the probabilities instead of training
    report = "$print('PROBS', [getattr(t, 'prob', None) for t in @train#preprocessing.transforms])"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config("xa_vessel_seg", "train")[0], "--bundle_root", str(tmp_path),
           "--image_size", "32", "--train#preprocessing#transforms#4#prob", "0", "--run", json.dumps([report])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("PROBS"))
    assert line == "PROBS [None, None, None, None, 0, 0.5, 0.3, 0.3, None]"
