"""Foreign ViT weights in and out (``angiokit.networks.foreign_weights``): timm / MAE and Hugging
Face ViTMAE / ViT checkpoints with random weights, saved in their own formats, imported into our
MONAI ViTs, give the features of the original on a grey frame (1 channel here, its normalised
3-channel copy there); our encoders exported to timm and Hugging Face round-trip."""

import functools
import json

import pytest
import torch

from angiokit.networks import VasoMIM, ViTSegmenter, export_encoder, load_network
from angiokit.networks.encoder_export import EncoderKeyError
from angiokit.networks.foreign_weights import export_huggingface, export_timm, load_pretrained_encoder
from monai.networks.nets import ViT

from .bundle_utils import workflow

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
TOL = 1e-4
S16 = dict(hidden_size=384, mlp_dim=1536, num_heads=6)


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (norms and position embeddings too), so a wrong mapping shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _three(grey: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    return (grey.expand(-1, 3, -1, -1) - mean) / std


def _vit(img_size: int, depth: int = 12, **sizes) -> ViT:
    sizes = {**S16, **sizes}
    return ViT(in_channels=1, img_size=img_size, patch_size=16, num_layers=depth, qkv_bias=True, spatial_dims=2, **sizes).eval()


def _timm_vit_s16(img_size: int, depth: int = 12, class_token: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    extra = {} if class_token else dict(class_token=False, global_pool="avg", fc_norm=False)
    return _randomise(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=img_size, depth=depth, **extra))


def test_timm_vit_s16_in_the_mae_wrapper_gives_the_same_features(tmp_path):
    model = _timm_vit_s16(64, class_token=False)
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": model.state_dict(), "epoch": 799}, path)  # MAE's training checkpoint
    ours = _vit(64)
    report = load_pretrained_encoder(ours, str(path))
    assert report.format == "timm" and report.layer_norm_eps == 1e-6
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        err = (ours(grey)[0] - model.forward_features(_three(grey))).abs().max().item()
    print(f"timm ViT-S/16 (no class token) -> ViT: max abs error {err:.2e}")
    assert err < TOL


def test_mae_checkpoint_with_decoder_continues_pre_training_with_the_same_features(tmp_path):
    model = _timm_vit_s16(64)
    state = {f"{k}": v for k, v in model.state_dict().items()}
    # MAE's decoder (512 wide, one block here), mask token and colour pixel predictor
    torch.manual_seed(1)
    block = timm.models.vision_transformer.Block(512, 16, qkv_bias=True)
    decoder = {"decoder_embed.weight": torch.randn(512, 384), "decoder_embed.bias": torch.randn(512), "mask_token": torch.randn(1, 1, 512),
               "decoder_pos_embed": torch.randn(1, 17, 512), "decoder_norm.weight": torch.randn(512), "decoder_norm.bias": torch.randn(512),
               "decoder_pred.weight": torch.randn(16 * 16 * 3, 512), "decoder_pred.bias": torch.randn(16 * 16 * 3)}
    decoder.update({f"decoder_blocks.0.{k}": v for k, v in block.state_dict().items()})
    path = tmp_path / "mae_pretrain_vit_small.pth"
    torch.save({"model": {**state, **decoder}}, path)
    mae = VasoMIM("vit_b16", img_size=64, decoder_num_layers=1, pretrained_encoder=str(path)).eval()  # sizes from the checkpoint
    assert mae.encoder_config["hidden_size"] == 384 and mae.constructor["hidden_size"] == 384 and mae.constructor["layer_norm_eps"] == 1e-6
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        err = (mae.encode(grey) - model.forward_features(_three(grey))).abs().max().item()  # class token included
    print(f"MAE-layout ViT-S/16 (class token) -> VasoMIM: max abs error {err:.2e}")
    assert err < TOL
    assert torch.equal(mae.decoder_embed.weight, decoder["decoder_embed.weight"]) and torch.equal(mae.mask_tokens, decoder["mask_token"])
    assert torch.equal(mae.decoder_pos_embedding, decoder["decoder_pos_embed"][:, 1:])
    assert torch.equal(mae.decoder_blocks[0].attn.out_proj.weight, block.attn.proj.weight)
    assert torch.equal(mae.decoder_blocks[1].weight, decoder["decoder_norm.weight"])
    assert torch.allclose(mae.decoder_pred.weight, decoder["decoder_pred.weight"].view(256, 3, 512).mean(1))
    # its export keeps the eps, and a segmenter fine-tuned from it gets the same features
    export_encoder(mae, str(tmp_path / "encoder.pt"))
    seg = ViTSegmenter("vit_b16", img_size=64, feature_size=8, pretrained_encoder=str(tmp_path / "encoder.pt")).eval()
    assert seg.vit.norm.eps == 1e-6 and seg.constructor["layer_norm_eps"] == 1e-6
    # the pre-training bundle takes it
    wf = workflow("vasomim_pretrain", ["train"], "train", bundle_root=str(tmp_path / "pre"), image_size=64, pretrained_encoder=str(path), **{"network_def#decoder_num_layers": 1})
    wf.initialize()
    assert torch.equal(wf.parser.get_parsed_content("network_def").blocks[3].attn.qkv.weight, state["blocks.3.attn.qkv.weight"])


def test_huggingface_vitmae_folder_gives_the_same_features(tmp_path):
    from transformers import ViTImageProcessor, ViTMAEConfig, ViTMAEModel

    torch.manual_seed(2)
    config = ViTMAEConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=384, image_size=64, patch_size=16, mask_ratio=0.0)
    model = _randomise(ViTMAEModel(config))
    model.save_pretrained(tmp_path / "vitmae")
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    ViTImageProcessor(image_mean=mean, image_std=std).save_pretrained(tmp_path / "vitmae")
    mae = VasoMIM("vit_tiny", img_size=64, decoder_num_layers=1, pretrained_encoder=str(tmp_path / "vitmae")).eval()
    assert mae.constructor["layer_norm_eps"] == 1e-12
    grey = torch.rand(2, 1, 64, 64)
    noise = torch.arange(16, dtype=torch.float).expand(2, -1)  # keeps every token, in order
    with torch.no_grad():
        theirs = model(pixel_values=_three(grey, torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)), noise=noise).last_hidden_state
        err = (mae.encode(grey) - theirs).abs().max().item()
    print(f"Hugging Face ViTMAEModel -> VasoMIM: max abs error {err:.2e}")
    assert theirs.shape == (2, 17, 96) and err < TOL


def test_512_grid_from_a_224_checkpoint_matches_timm_resampling(tmp_path):
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = _timm_vit_s16(224, depth=2, class_token=False)
    torch.save(model.state_dict(), tmp_path / "vit_s16_224.pth")
    big = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=512, depth=2, class_token=False, global_pool="avg", fc_norm=False).eval()
    big.load_state_dict(checkpoint_filter_fn(model.state_dict(), big))  # timm's resample_abs_pos_embed
    ours = _vit(512, depth=2)
    report = load_pretrained_encoder(ours, str(tmp_path / "vit_s16_224.pth"))
    assert any("14x14 -> 32x32" in c for c in report.conversions)
    assert torch.allclose(ours.patch_embedding.position_embeddings, big.pos_embed, atol=1e-6)
    grey = torch.rand(1, 1, 512, 512)
    with torch.no_grad():
        err = (ours(grey)[0] - big.forward_features(_three(grey))).abs().max().item()
    print(f"ViT-S/16 224 -> 512 grid: max abs error {err:.2e}")
    assert err < TOL


def test_our_encoder_to_timm_and_back(tmp_path):
    torch.manual_seed(3)
    mae = _randomise(VasoMIM("vit_tiny", img_size=32, decoder_num_layers=1))
    encoder = export_encoder(mae, str(tmp_path / "encoder.pt"))
    kwargs = export_timm(encoder, str(tmp_path / "vit.safetensors"))
    eps = kwargs.pop("layer_norm_eps")
    from safetensors.torch import load_file

    model = timm.create_model("vit_base_patch16_224", pretrained=False, norm_layer=functools.partial(torch.nn.LayerNorm, eps=eps), **kwargs).eval()
    model.load_state_dict(load_file(str(tmp_path / "vit.safetensors")), strict=True)
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        err = (model.forward_features(grey) - mae.encode(grey)).abs().max().item()
    print(f"VasoMIM encoder -> timm: max abs error {err:.2e}")
    assert err < TOL
    back = VasoMIM("vit_tiny", img_size=32, decoder_num_layers=1, pretrained_encoder=str(tmp_path / "vit.safetensors"))
    for k, v in torch.load(encoder, weights_only=True)["encoder"].items():
        if ".norm_cross_attn." not in k:  # MONAI's unused (frozen) cross-attention norm: not an encoder weight
            k = k.replace("norm.", "blocks.2.") if k.startswith("norm.") else k  # MAE's final norm: the last entry of blocks
            assert torch.equal(back.state_dict()[k], v), k
    assert back.blocks[0].norm1.eps == 1e-5  # the export's eps came back with it (PATH.json)
    # a fine-tuned segmenter's encoder (no class token) round-trips too
    seg = _randomise(ViTSegmenter("vit_tiny", img_size=32, feature_size=8))
    kwargs = export_timm(seg, str(tmp_path / "seg.pth"))
    eps = kwargs.pop("layer_norm_eps")
    model = timm.create_model("vit_base_patch16_224", pretrained=False, norm_layer=functools.partial(torch.nn.LayerNorm, eps=eps), **kwargs).eval()
    model.load_state_dict(torch.load(tmp_path / "seg.pth", weights_only=True), strict=True)
    with torch.no_grad():
        err = (model.forward_features(grey) - seg.vit(grey)[0]).abs().max().item()
    print(f"segmenter encoder (no class token) -> timm: max abs error {err:.2e}")
    assert not kwargs["class_token"] and err < TOL
    again = ViTSegmenter("vit_tiny", img_size=32, feature_size=8, pretrained_encoder=str(tmp_path / "seg.pth"))
    for k, v in seg.vit.state_dict().items():
        if ".norm_cross_attn." not in k:
            assert torch.equal(again.vit.state_dict()[k], v), k


def test_our_encoder_to_a_huggingface_folder(tmp_path):
    from transformers import ViTModel

    torch.manual_seed(4)
    mae = _randomise(VasoMIM("vit_tiny", img_size=32, decoder_num_layers=1))
    export_huggingface(mae, str(tmp_path / "hf"))
    model = ViTModel.from_pretrained(str(tmp_path / "hf")).eval()
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        err = (model(pixel_values=grey).last_hidden_state - mae.encode(grey)).abs().max().item()
    print(f"VasoMIM encoder -> Hugging Face ViTModel: max abs error {err:.2e}")
    assert err < TOL
    back = VasoMIM("vit_tiny", img_size=32, decoder_num_layers=1, pretrained_encoder=str(tmp_path / "hf"))
    assert torch.equal(back.blocks[1].attn.qkv.weight, mae.blocks[1].attn.qkv.weight) and torch.equal(back.cls_token, mae.cls_token)


def test_every_network_takes_an_mae_checkpoint(tmp_path):
    from angiokit.networks import CASIQA, StenosisRetinaNet, ViTRegressor

    model = _timm_vit_s16(64, depth=2)
    path = tmp_path / "mae.pth"
    torch.save({"model": model.state_dict()}, path)
    qkv = model.state_dict()["blocks.1.attn.qkv.weight"]
    networks = {
        "unetr": ViTSegmenter("vit_b16", img_size=64, feature_size=8, pretrained_encoder=str(path)),
        "unet_adapter": ViTSegmenter("vit_b16", img_size=64, feature_size=8, decoder="unet_adapter", patch_size=16, pretrained_encoder=str(path)),
        "detector": StenosisRetinaNet(img_size=64, pyramid_channels=16, pretrained_encoder=str(path), pretrained_format="mae"),
        "cas_iqa": CASIQA(img_size=64, auxiliary=(), text_layers=1, pretrained_encoder=str(path)),
        "vit_regressor": ViTRegressor(img_size=64, pretrained_encoder=str(path)),
    }
    for name, net in networks.items():
        assert torch.equal(net.vit.blocks[1].attn.qkv.weight, qkv), name
        assert net.vit.norm.eps == 1e-6 and net.constructor["layer_norm_eps"] == 1e-6 and net.constructor["hidden_size"] == 384, name


def test_wrong_hidden_size_names_the_file_and_the_key(tmp_path):
    model = _timm_vit_s16(32, depth=1)
    path = tmp_path / "mae_vit_s16.pth"
    torch.save({"model": model.state_dict()}, path)
    with pytest.raises(EncoderKeyError) as err:
        load_pretrained_encoder(_vit(32, depth=1, hidden_size=192, mlp_dim=768, num_heads=3), str(path))
    assert str(path) in str(err.value) and "hidden size 384 in the checkpoint, 192 in the network" in str(err.value)
    assert "patch_embed.proj.weight (384, 3, 16, 16)" in str(err.value)
    with pytest.raises(EncoderKeyError, match=r"mae_vit_s16.pth: .*hidden size 384 .*patch_embed.proj.weight"):  # through a network's constructor
        ViTSegmenter("vit_tiny", img_size=32, hidden_size=192, mlp_dim=768, num_heads=3, num_layers=1, pretrained_encoder=str(path))


def test_unknown_layout_names_the_file_and_some_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(2, 8)}}, path)
    with pytest.raises(EncoderKeyError) as err:
        load_pretrained_encoder(_vit(32, depth=1), str(path))
    assert str(path) in str(err.value) and "conv1.weight" in str(err.value)
    with pytest.raises(ValueError, match="pretrained_format"):
        load_pretrained_encoder(_vit(32, depth=1), str(path), format="caffe")


def test_segmentation_bundle_fine_tunes_from_an_mae_checkpoint(tmp_path):
    torch.manual_seed(5)
    model = _randomise(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32, embed_dim=64, depth=2, num_heads=1, mlp_ratio=4))
    path = tmp_path / "mae.pth"
    torch.save({"model": model.state_dict(), "args": __import__("argparse").Namespace(model="mae_vit_tiny")}, path)
    from .bundle_utils import run_workflow

    root = tmp_path / "seg"
    run_workflow("xa_vessel_seg", ["train"], "train", root, preset="vit_b16", image_size=32, max_epochs=1, batch_size=2, synthetic_length=4,
                 synthetic_val_length=2, num_workers=0, warmup_epochs=1, val_interval=1, pretrained_encoder=str(path), pretrained_format="mae",
                 **{"network_def#feature_size": 8})
    net = load_network(str(root / "models" / "model.pt"))
    assert net.encoder_config["hidden_size"] == 64 and net.vit.norm.eps == 1e-6  # sizes and eps came from the checkpoint, and stay
    assert json.dumps(net.constructor).count("layer_norm_eps") == 1
