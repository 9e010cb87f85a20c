"""The real CAS-IQA bundle configs: tiny CPU train -> evaluate -> inference on the synthetic benchmark."""

import json

import pytest
import torch

from .bundle_utils import run_workflow, verify_metadata, workflow

NET = {"preset": "vit_tiny", "image_size": 32}  # sizes named once, for training: evaluation and inference read them from model.pt


def _run(names, workflow_type, root, **overrides):
    return run_workflow("cas_iqa", names, workflow_type, root, **overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("iqa")
    _run(["train"], "train", root, max_epochs=2, val_interval=1, batch_size=4, num_workers=0, warmup_epochs=1, synthetic_cases=16, benchmark_size=64, **NET)
    return root


def test_metadata_passes_monai_schema():
    verify_metadata("cas_iqa")  # raises on a field the schema rejects


def test_parsing_the_configs_writes_nothing_and_the_prompts_have_one_home(tmp_path):
    # scores_csv is a plain path: the benchmark is written by the first step of initialize, never
    # by a tool that only parses the config (MONAI Label, verify_net_in_out)
    from angiokit.data.quality_dataset import prepare_default_benchmark
    from angiokit.networks import DEFAULT_PROMPTS

    train = workflow("cas_iqa", ["train", "evaluate"], "train", bundle_root=str(tmp_path), **NET).parser
    assert train.get_parsed_content("scores_csv") == str(tmp_path / "data" / "quality_benchmark" / "scores.csv")
    train.get_parsed_content("network_def")
    assert train.get_parsed_content("prompts") == DEFAULT_PROMPTS
    assert workflow("cas_iqa", ["inference"], "infer", bundle_root=str(tmp_path)).parser.get_parsed_content("prompts") == DEFAULT_PROMPTS
    # the step itself leaves the user's CSV, or none (the MONAI Label app's ratings), alone
    for scores_csv in (str(tmp_path / "mine.csv"), ""):
        assert prepare_default_benchmark(scores_csv, str(tmp_path / "data" / "quality_benchmark"), n=2, size=32) is None
    assert not any(tmp_path.iterdir())


def test_train_builds_the_benchmark_and_keeps_the_best_model(trained):
    assert (trained / "data" / "quality_benchmark" / "scores.csv").exists()
    assert (trained / "models" / "model.pt").exists()


def test_training_can_start_from_a_trained_model(trained, tmp_path):
    saved = torch.load(trained / "models" / "model.pt", map_location="cpu")["model"]  # beside it: "network_spec"
    frozen = dict(max_epochs=1, val_interval=1, batch_size=4, num_workers=0, warmup_epochs=0, lr=0.0, weight_decay=0.0, dataset_dir=str(trained / "data" / "quality_benchmark"), **NET)

    def weights_after(**overrides):  # lr 0: the weights (not the norm statistics) stay what training started from
        network = _run(["train"], "train", tmp_path / ("started" if overrides else "fresh"), **frozen, **overrides).parser.get_parsed_content("network")
        return {k: v.detach().cpu() for k, v in network.named_parameters()}

    started = weights_after(init_checkpoint=str(trained / "models" / "model.pt"))
    assert started and all(torch.equal(v, saved[k]) for k, v in started.items())
    fresh = weights_after()
    assert not all(torch.equal(v, saved[k]) for k, v in fresh.items())


def test_a_wrong_starting_model_is_named_before_training(tmp_path):
    from torch import nn

    from angiokit.networks import load_trained

    with pytest.raises(FileNotFoundError, match="missing.pt: trained model not found"):
        load_trained(nn.Linear(2, 2), str(tmp_path / "missing.pt"))
    other = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(ValueError, match="other.pt: expected the weights of a Linear"):
        load_trained(nn.Linear(2, 2), str(other))


def test_evaluate_reports_correlations_and_scatter(trained):
    out = trained / "evaluation"
    _run(["train", "evaluate"], "train", trained, output_dir=str(out), num_workers=0, synthetic_cases=16, benchmark_size=64)
    result = json.load(open(out / "correlations.json"))
    assert set(result) == {"n", "srcc", "plcc", "krcc", "confidence_interval"} and result["n"] >= 1
    assert set(result["srcc"]) == {"guidewire", "branch", "artifact", "mean"}
    interval = result["confidence_interval"]
    assert interval["resamples"] == 1000 and set(interval["krcc"]) == {"guidewire", "branch", "artifact"}
    assert (out / "scatter.png").exists() and (out / "predictions.csv").read_text().startswith("case,guidewire_pred")


def test_inference_writes_one_json_per_image_with_its_auxiliary_images(trained, tmp_path):
    images = trained / "data" / "quality_benchmark" / "images"
    _run(["inference"], "infer", trained, dataset_dir=str(images), output_dir=str(tmp_path))
    docs = sorted(tmp_path.glob("*_quality.json"))
    assert len(docs) == 16  # the *_aux_* files are not scored
    doc = json.load(open(docs[0]))
    assert set(doc["scores"]) == {"guidewire", "branch", "artifact"} and all(1 <= v <= 5 for v in doc["scores"].values())
    assert abs(sum(doc["probabilities"]["branch"].values()) - 1) < 1e-3
    assert doc["auxiliary"]["fluoro"].endswith("_aux_fluoro.png") and doc["auxiliary"]["reference"].endswith("_aux_reference.png")


@pytest.mark.parametrize("ablation", ["vit_regressor", "no_auxiliary", "no_must"])
def test_each_ablation_config_trains_through_the_bundle(ablation, trained, tmp_path):
    # the ablations of docs/results.md, as apps.iqa_benchmark runs them: train.json + the overlay
    from angiokit.networks import CASIQA, ViTRegressor

    wf = _run(["train", ablation], "train", tmp_path, max_epochs=1, val_interval=1, batch_size=4, num_workers=0, warmup_epochs=1, dataset_dir=str(trained / "data" / "quality_benchmark"), **NET)
    network = wf.parser.get_parsed_content("network")
    assert (tmp_path / "models" / "model.pt").exists()
    if ablation == "vit_regressor":
        assert isinstance(network, ViTRegressor)
    else:
        auxiliary_and_fusion = {"no_auxiliary": ((), "must"), "no_must": (("fluoro", "reference"), "mean")}[ablation]
        assert isinstance(network, CASIQA) and (network.auxiliary, network.fusion) == auxiliary_and_fusion
