"""Checkpoints that carry what built them, named sizes in one place, and the layering of the code."""

from __future__ import annotations

import ast
import logging

import pytest
import torch

from angiokit.networks import (
    CASIQA,
    PRESETS,
    BasicUNet,
    VasoMIM,
    VesselnessThresholdSegmenter,
    ViTSegmenter,
    checkpoint_setting,
    export_encoder,
    load_network,
    network_from_checkpoint,
    read_network_spec,
    save_checkpoint,
    size_overrides,
)

from .conftest import REPO

TINY_DECODER = dict(decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=1, decoder_mlp_dim=64)


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: ViTSegmenter("vit_tiny", img_size=32, feature_size=8), (1, 1, 32, 32)),
        (lambda: BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4)), (1, 1, 32, 32)),
        (lambda: VesselnessThresholdSegmenter("sato", (1.0, 2.0), out_channels=2), (1, 1, 32, 32)),
    ],
)
def test_a_checkpoint_rebuilds_its_network_with_no_sizes_given(tmp_path, build, shape):
    torch.manual_seed(0)
    network = build().eval()
    path = save_checkpoint(network, str(tmp_path / "model.pt"), "9.9.9", image_size=32, num_classes=2)
    rebuilt = load_network(path)
    assert type(rebuilt) is type(network)
    x = torch.rand(*shape)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), network(x))
    spec = read_network_spec(path)
    assert spec["bundle_version"] == "9.9.9" and spec["config"]["_target_"].startswith(("angiokit.networks.", "monai."))
    assert checkpoint_setting(path, "image_size", 224) == 32 and checkpoint_setting(path, "num_classes") == 2


def test_recorded_sizes_are_the_resolved_ones_and_a_fitted_threshold_is_kept(tmp_path):
    seg = ViTSegmenter("vit_cpu", img_size=32)
    assert {k: seg.constructor[k] for k in PRESETS["vit_cpu"]} == PRESETS["vit_cpu"]
    classical = VesselnessThresholdSegmenter(sigmas=(1.0,))
    images = [torch.rand(1, 16, 16) for _ in range(2)]
    cut = classical.fit(images, [(img[0] > 0.5).numpy() for img in images], grid=(0.1, 0.2))
    assert load_network(save_checkpoint(classical, str(tmp_path / "c.pt"))).threshold == cut


def test_fine_tuning_adopts_the_sizes_the_encoder_export_records(tmp_path):
    mae = VasoMIM("vit_tiny", img_size=32, **TINY_DECODER)
    encoder = export_encoder(mae, str(tmp_path / "encoder.pt"))
    seg = ViTSegmenter(img_size=64, feature_size=8, pretrained_encoder=encoder)  # preset left at ViT-B: the encoder's sizes win
    assert seg.constructor["hidden_size"] == PRESETS["vit_tiny"]["hidden_size"] and "pretrained_encoder" not in seg.constructor
    iqa = CASIQA(img_size=32, pretrained_encoder=encoder)
    assert iqa.constructor["num_layers"] == PRESETS["vit_tiny"]["num_layers"]
    rebuilt = load_network(save_checkpoint(seg, str(tmp_path / "model.pt")))  # the encoder file is not needed again
    assert torch.equal(rebuilt.vit.patch_embedding.position_embeddings, seg.vit.patch_embedding.position_embeddings)
    with pytest.raises(ValueError, match="encoder.pt: encoder was pre-trained with hidden_size=64"):
        ViTSegmenter("vit_tiny", img_size=32, hidden_size=128, mlp_dim=512, num_heads=2, pretrained_encoder=encoder)


def test_an_older_checkpoint_builds_the_configured_network_and_says_so(tmp_path, caplog):
    network = ViTSegmenter("vit_tiny", img_size=32, feature_size=8)
    old = tmp_path / "old.pt"
    torch.save({"model": network.state_dict()}, old)
    assert read_network_spec(str(old)) is None and checkpoint_setting(str(old), "image_size", 224) == 224
    with caplog.at_level(logging.WARNING, logger="angiokit.networks.checkpoint"):
        rebuilt = load_network(str(old), fallback=lambda **kw: ViTSegmenter("vit_tiny", img_size=32, feature_size=8, **kw))
    assert "does not record its network" in caplog.text and "old.pt" in caplog.text
    assert isinstance(rebuilt, ViTSegmenter)
    with pytest.raises(ValueError, match="old.pt: the weights do not fit"):
        load_network(str(old), fallback=lambda **kw: ViTSegmenter("vit_tiny", img_size=64, feature_size=8, **kw))
    with pytest.raises(ValueError, match="old.pt: the checkpoint does not record its network"):
        network_from_checkpoint(str(old))


def test_run_time_overrides_reach_only_networks_that_take_them(tmp_path):
    seg = save_checkpoint(ViTSegmenter("vit_tiny", img_size=32, feature_size=8), str(tmp_path / "seg.pt"))
    assert network_from_checkpoint(seg, dropout=0.3).vit.blocks[0].mlp.drop1.p == 0.3
    frangi = save_checkpoint(VesselnessThresholdSegmenter(out_channels=2), str(tmp_path / "frangi.pt"))
    assert isinstance(network_from_checkpoint(frangi, dropout=0.3), VesselnessThresholdSegmenter)  # no dropout: ignored


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt: not a readable PyTorch checkpoint"):
        read_network_spec(str(bad))
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}, "network_spec": {"layers": 3}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt: its 'network_spec' entry is not a network description"):
        read_network_spec(str(foreign))


def test_named_sizes_and_their_bundle_overrides():
    assert size_overrides(128, 4) == {"preset": "vit_cpu"} and size_overrides(64, 2) == {"preset": "vit_tiny"}
    # an unnamed size spells out the network_def ids, heads = width // 64, MLP = 4 x width
    assert size_overrides(192, 6) == {"preset": "vit_s16", "network_def#hidden_size": 192, "network_def#mlp_dim": 768, "network_def#num_layers": 6, "network_def#num_heads": 3}


def _imports(path):
    """Absolute module names imported by a file (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module


def test_imports_point_down_and_angiokit_has_no_cycle_between_its_parts():
    higher = ("apps", "monailabel_app", "lib", "tests", "bundles")
    edges = {}
    for path in sorted((REPO / "angiokit").rglob("*.py")):
        names = list(_imports(path))
        wrong = [n for n in names if n.split(".")[0] in higher]
        assert not wrong, f"{path.relative_to(REPO)} imports a higher layer: {wrong}"
        part = path.relative_to(REPO / "angiokit").parts[0].removesuffix(".py")
        for n in names:
            if n.startswith("angiokit.") and n.split(".")[1] != part:
                edges.setdefault(part, set()).add(n.split(".")[1])
    for path in sorted(REPO.glob("monailabel_app/**/*.py")):
        assert not [n for n in _imports(path) if n.split(".")[0] == "apps"], f"{path.relative_to(REPO)} imports apps/"

    # the parts of angiokit form a directed acyclic graph (an import cycle would loop here)
    def reaches(start, goal, seen=()):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen + (nxt,))) for nxt in edges.get(start, ()))

    cycles = [part for part in edges if reaches(part, part)]
    assert not cycles, f"import cycles through {cycles}: {edges}"
