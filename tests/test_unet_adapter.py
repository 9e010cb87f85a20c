"""ViTSegmenter's UNet-adapter decoder (CheXWorld / VasoMIM's segmentation recipe): shapes, drop
path, gradients, checkpoint round trip, optimizer groups. Tiny sizes only (preset vit_tiny)."""

import pytest
import torch

from angiokit.networks import ViTSegmenter, network_from_checkpoint, save_checkpoint
from angiokit.networks.unet_adapter import DropPath, DropPathTransformerBlock
from angiokit.optim import param_groups

SMALL = dict(preset="vit_tiny", decoder="unet_adapter", feature_size=4)


def adapter(**kw):
    torch.manual_seed(0)
    return ViTSegmenter(**{**SMALL, **kw})


@pytest.mark.parametrize("patch_size,size", [(16, 64), (16, 32), (8, 48), (8, 32)])
def test_output_shape(patch_size, size):
    net = adapter(patch_size=patch_size, img_size=size, out_channels=3)
    out = net(torch.rand(2, 1, size, size))
    assert out.shape == (2, 3, size, size)
    assert net.vit.patch_embedding.n_patches == (size // patch_size) ** 2


@pytest.mark.parametrize("kw,message", [
    (dict(img_size=40), "multiple of 16"),
    (dict(img_size=24, patch_size=8), "multiple of 16"),
    (dict(patch_size=12), "patch size"),
    (dict(decoder="unetr", patch_size=8), "patch 16 only"),
    (dict(decoder="fpn"), "decoder must be one of"),
    (dict(drop_path=1.0), "drop_path is a probability"),
])
def test_sizes_refused_clearly(kw, message):
    with pytest.raises(ValueError, match=message):
        adapter(**{"img_size": 32, **kw})


def test_drop_path_train_vs_eval():
    net = adapter(img_size=32, drop_path=0.5, dropout=0.0)
    rates = [b.drop_path.rate for b in net.vit.blocks]
    assert rates == [0.0, 0.5]  # linear from 0 to drop_path
    x = torch.rand(4, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.equal(a, b)
    # in training the last block's branches are dropped per sample: its output differs between passes
    net.train()
    last = net.vit.blocks[-1]
    outs = []
    handle = last.register_forward_hook(lambda m, i, o: outs.append(o.detach().clone()))
    torch.manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            net(x)
    handle.remove()
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_drop_path_module():
    dp = DropPath(0.5)
    x = torch.ones(1000, 3)
    y = dp.train()(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0} and 0.3 < (y[:, 0] == 0).float().mean() < 0.7
    assert torch.equal(dp.eval()(x), x)


def test_drop_path_keeps_state_dict_and_default_off():
    with_dp, without = adapter(img_size=32, drop_path=0.1), adapter(img_size=32)
    assert with_dp.state_dict().keys() == without.state_dict().keys()
    assert not hasattr(without.vit.blocks[0], "drop_path")
    assert ViTSegmenter(preset="vit_tiny", img_size=32).constructor["drop_path"] == 0.0
    # in eval, a block with drop path computes exactly what MONAI's block does with the same weights
    assert all(type(b) is DropPathTransformerBlock for b in with_dp.vit.blocks)
    without.load_state_dict(with_dp.state_dict(), strict=True)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(with_dp.eval()(x), without.eval()(x))


@pytest.mark.parametrize("kw", [dict(decoder="unet_adapter", patch_size=8), dict(decoder="unetr", feature_size=8)])
def test_scripts_with_drop_path(kw):
    """The bundle's ckpt_export is TorchScript: both decoders, with the recipe's drop path, script
    and compute what the eager model does."""
    net = ViTSegmenter(preset="vit_tiny", img_size=32, drop_path=0.1, **kw).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-6)


def test_gradients_reach_encoder():
    net = adapter(img_size=32, drop_path=0.1)
    net(torch.rand(2, 1, 32, 32)).sum().backward()
    for name in ("vit.patch_embedding.patch_embeddings.weight", "vit.blocks.0.attn.qkv.weight", "vit.norm.weight", "adapter.stem.conv.0.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    unused = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused  # DDP without find_unused_parameters


@pytest.mark.parametrize("patch_size", [16, 8])
def test_checkpoint_round_trip(tmp_path, patch_size):
    net = adapter(img_size=32, patch_size=patch_size, drop_path=0.1).eval()
    path = save_checkpoint(net, str(tmp_path / "model.pt"), "0.1.0", image_size=32, num_classes=2)
    rebuilt = network_from_checkpoint(path)  # no flags: the recorded constructor says it all
    assert rebuilt.decoder == "unet_adapter" and rebuilt.constructor["patch_size"] == patch_size
    assert rebuilt.constructor["feature_size"] == 4 and rebuilt.constructor["norm_name"] == "batch"
    rebuilt.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), rebuilt.eval()(x))


def test_param_groups_decoder_at_top_lr():
    net = adapter(img_size=32)
    lr, layer_decay = 1e-3, 0.75
    groups = param_groups(net, 0.05, ["position_embeddings", "cls_token"], lr, layer_decay)
    depth = len(net.vit.blocks)
    where = {id(p): g for g in groups for p in g["params"]}
    named = dict(net.named_parameters())
    decoder = {n: p for n, p in named.items() if n.startswith("adapter.")}
    assert decoder
    for name, p in decoder.items():
        g = where[id(p)]
        assert g["lr_scale"] == 1.0 and g["lr"] == lr, name
        assert g["weight_decay"] == (0.0 if p.ndim <= 1 else 0.05), name
    assert where[id(named["vit.blocks.0.attn.qkv.weight"])]["lr_scale"] == pytest.approx(layer_decay**depth)
    assert where[id(named["vit.patch_embedding.patch_embeddings.weight"])]["lr_scale"] == pytest.approx(layer_decay ** (depth + 1))
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in net.parameters())


def test_bundle_trains_the_adapter_and_consumers_rebuild_it_without_flags(tmp_path):
    """train.json with ``--decoder unet_adapter --patch_size 8``; evaluate.json and inference.json
    then build the network from the checkpoint alone."""
    from angiokit.networks import load_network

    from .bundle_utils import workflow

    train = {"preset": "vit_tiny", "image_size": 32, "network_def#feature_size": 4, "batch_size": 2, "synthetic_length": 4,
             "synthetic_val_length": 2, "num_workers": 0, "warmup_epochs": 1, "val_interval": 1, "max_epochs": 1}
    wf = workflow("xa_vessel_seg", ["train"], "train", bundle_root=str(tmp_path), decoder="unet_adapter", patch_size=8, **train)
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    path = tmp_path / "models" / "model.pt"
    spec = torch.load(path, weights_only=True)["network_spec"]["config"]
    assert (spec["decoder"], spec["patch_size"], spec["drop_path"]) == ("unet_adapter", 8, 0.1)
    assert load_network(str(path)).decoder == "unet_adapter"
    for names, kind in ((["train", "evaluate"], "train"), (["inference"], "infer")):
        wf = workflow("xa_vessel_seg", names, kind, bundle_root=str(tmp_path))  # no decoder / patch / size flags
        wf.initialize()
        net = wf.parser.get_parsed_content("network")
        assert net.decoder == "unet_adapter" and net.vit.patch_embedding.n_patches == (32 // 8) ** 2
        net.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)


def test_pretrained_encoder_loads_into_the_adapter_and_patch_must_match(tmp_path):
    from angiokit.networks import VasoMIM, export_encoder

    mae = VasoMIM("vit_tiny", img_size=32, decoder_num_layers=1)
    encoder = export_encoder(mae, str(tmp_path / "encoder.pt"))
    net = adapter(img_size=64, pretrained_encoder=encoder)  # position embeddings resized 2x2 -> 4x4
    assert torch.equal(net.vit.blocks[1].mlp.linear2.weight, mae.blocks[1].mlp.linear2.weight)
    assert "pretrained_encoder" not in net.constructor
    with pytest.raises(ValueError, match="patch_size=16"):
        adapter(img_size=64, patch_size=8, pretrained_encoder=encoder)


def test_mc_dropout_mode_samples_dropout_but_keeps_batch_norm_statistics():
    """MONAI Label's MC-dropout scoring runs the served network in train mode; with the adapter's
    batch norm that would normalise each frame by itself and overwrite the running statistics.
    ``sample_dropout_only`` leaves batch norm in eval and samples the dropout."""
    from angiokit.networks.unet_adapter import sample_dropout_only

    net = adapter(img_size=32, dropout=0.3, drop_path=0.1)
    net.train()
    net(torch.rand(4, 1, 32, 32))  # some running statistics
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    sample_dropout_only(net)
    assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a, b = net(x), net(x)
    assert not torch.equal(a, b)  # dropout samples
    after = {k: v for k, v in net.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
