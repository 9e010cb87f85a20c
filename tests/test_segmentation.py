import pytest
import torch

from angiokit.data import AngioDataError
from angiokit.data.segmentation import LabelToClassesd
from angiokit.engines.inferers import CineInferer, ResizeInferer
from angiokit.losses import VesselSegmentationLoss
from angiokit.networks import VasoMIM, ViTSegmenter, export_encoder, layer_decay_param_groups, resize_position_embeddings

SMALL = dict(hidden_size=48, num_heads=2, mlp_dim=96, feature_size=8)


def test_vit_segmenter_shapes_depths_and_dropout():
    seg = ViTSegmenter("vit_s16", img_size=32, **SMALL)
    assert seg(torch.rand(2, 1, 32, 32)).shape == (2, 2, 32, 32) and seg.taps == (3, 6, 9)
    deep = ViTSegmenter("vit_l16", img_size=32, out_channels=26, dropout=0.2, **SMALL)
    assert len(deep.vit.blocks) == 24 and deep.taps == (6, 12, 18)
    assert deep(torch.rand(1, 1, 32, 32)).shape == (1, 26, 32, 32)
    deep.train()
    x = torch.rand(1, 1, 32, 32)
    assert not torch.equal(deep(x), deep(x))  # MC dropout is live in train mode


def test_pretrained_encoder_loads_strictly_and_adapts_its_size(tmp_path):
    mae = VasoMIM("vit_s16", img_size=64, hidden_size=48, num_heads=2, mlp_dim=96, num_layers=12, decoder_num_layers=1)
    export_encoder(mae, str(tmp_path / "encoder.pt"))
    seg = ViTSegmenter("vit_s16", img_size=32, pretrained_encoder=str(tmp_path / "encoder.pt"), **SMALL)
    assert torch.equal(seg.vit.blocks[5].attn.qkv.weight, mae.blocks[5].attn.qkv.weight)
    assert seg.vit.patch_embedding.position_embeddings.shape[1] == 4  # 16 pre-training patches resized to 4
    with pytest.raises(ValueError, match="hidden_size=48"):
        ViTSegmenter("vit_s16", img_size=32, pretrained_encoder=str(tmp_path / "encoder.pt"), hidden_size=64, num_heads=2, mlp_dim=96)
    with pytest.raises(FileNotFoundError, match="not found"):
        ViTSegmenter("vit_s16", img_size=32, pretrained_encoder=str(tmp_path / "missing.pt"), **SMALL)


def test_position_embedding_resize_keeps_a_smooth_grid():
    grid = torch.arange(16.0).reshape(1, 4, 4, 1).expand(1, 4, 4, 3).reshape(1, 16, 3)
    assert torch.equal(resize_position_embeddings(grid, 16), grid)
    up = resize_position_embeddings(grid, 64).reshape(8, 8, 3)[..., 0]
    assert (up[:, 1:] >= up[:, :-1] - 1e-4).all()  # still increasing along the row
    with pytest.raises(ValueError, match="square"):
        resize_position_embeddings(grid, 12)


def test_layer_decay_groups():
    seg = ViTSegmenter("vit_s16", img_size=32, **SMALL)
    groups = layer_decay_param_groups(seg, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(seg.out.conv.conv.weight)]["lr"] == 1.0
    assert by_id[id(seg.vit.blocks[11].mlp.linear1.weight)]["lr"] == 0.5
    assert by_id[id(seg.vit.patch_embedding.patch_embeddings.weight)]["lr"] == pytest.approx(0.5**13)
    assert by_id[id(seg.vit.blocks[0].norm1.weight)]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in seg.parameters() if p.requires_grad)


def test_inferers_return_the_input_size_and_every_frame():
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    out = ResizeInferer(32)(torch.rand(2, 1, 100, 80), net)
    assert out.shape == (2, 2, 100, 80)
    cine = CineInferer(ResizeInferer(32), max_batch=3)(torch.rand(1, 7, 50, 50), net)
    assert cine.shape == (7, 2, 50, 50)


def test_labels_become_classes_with_clear_errors():
    from monai.data import MetaTensor

    binary = LabelToClassesd("label", 2)({"label": torch.tensor([[[0.0, 255.0]]])})["label"]
    assert torch.equal(binary, torch.tensor([[[0.0, 1.0]]]))
    bad = MetaTensor(torch.tensor([[[0.0, 30.0]]]), meta={"filename_or_obj": "seg_30.png"})
    with pytest.raises(AngioDataError, match="seg_30.png.*0..25"):
        LabelToClassesd("label", 26)({"label": bad})


def test_loss_adds_soft_cldice_when_asked():
    logits, target = torch.randn(2, 2, 32, 32), (torch.rand(2, 1, 32, 32) > 0.8).float()
    plain, with_cl = VesselSegmentationLoss(0.0)(logits, target), VesselSegmentationLoss(0.5)(logits, target)
    assert with_cl > plain
    vessels = torch.zeros(1, 1, 32, 32)
    vessels[..., 10:14, 2:30] = 1.0
    vessels[..., 2:30, 20:23] = 1.0
    perfect = torch.cat([1 - vessels, vessels], 1) * 20 - 10
    assert VesselSegmentationLoss(0.5)(perfect, vessels) < 0.05
