import pytest
import torch
from monai.networks.nets import UNETR, ViT

from angiokit.engines import VasoMIMObjective, masked_patch_errors, train_step
from angiokit.losses import anatomical_consistency_loss
from angiokit.networks import AnatomyGuidance, EncoderKeyError, FrozenSegmenter, PRESETS, VasoMIM, VesselnessSegmenter, encoder_state_dict, guided_masking, load_encoder

TINY = dict(img_size=32, num_layers=2, hidden_size=64, mlp_dim=128, num_heads=4, decoder_num_layers=1, decoder_hidden_size=32, decoder_num_heads=4, decoder_mlp_dim=64)


@pytest.fixture()
def mae():
    torch.manual_seed(0)
    return VasoMIM("vit_s16", patch_size=8, **TINY)


def test_presets_are_the_standard_vits():
    assert PRESETS["vit_b16"] == dict(hidden_size=768, mlp_dim=3072, num_layers=12, num_heads=12)
    assert PRESETS["vit_s16"]["hidden_size"] == 384 and PRESETS["vit_l16"]["num_layers"] == 24
    m = VasoMIM("vit_s16", img_size=64, num_layers=1, decoder_num_layers=1)
    assert m.patch_embedding.patch_embeddings.weight.shape == (384, 1, 16, 16) and m.num_mask == 8
    with pytest.raises(ValueError, match="preset"):
        VasoMIM("vit_h14")


def test_patchify_roundtrip_and_shapes(mae):
    x = torch.rand(3, 1, 32, 32)
    assert mae.patchify(x).shape == (3, 16, 64)
    assert torch.equal(mae.unpatchify(mae.patchify(x)), x)
    pred, mask = mae(x)
    assert pred.shape == (3, 16, 64) and (mask.sum(1) == 8).all()


def test_reconstruction_keeps_visible_pixels_and_loss_ignores_them(mae):
    x = torch.rand(2, 1, 32, 32)
    keep, mask = guided_masking(torch.zeros(2, 16), 8, 0.0)
    pred, mask = mae(x, keep, mask)
    rec = mae.reconstruct(x, pred, mask)
    visible = (1 - mask)[..., None].bool().expand(-1, -1, 64)
    assert torch.equal(mae.patchify(rec)[visible], mae.patchify(x)[visible])
    assert torch.allclose(mae.patchify(rec)[~visible], pred[~visible])
    changed = pred.clone()
    changed[visible] += 5.0
    assert mae.reconstruction_loss(x, changed, mask).item() == pytest.approx(mae.reconstruction_loss(x, pred, mask).item())


def test_norm_pix_loss_targets_are_normalised():
    m = VasoMIM("vit_s16", patch_size=8, norm_pix_loss=True, **TINY)
    t = m.targets(torch.rand(2, 1, 32, 32) * 7 + 3)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)


def test_consistency_gradients_reach_the_mae_only(mae):
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    anatomy = AnatomyGuidance(FrozenSegmenter(net, output="softmax"))
    x = torch.rand(2, 1, 32, 32)
    keep, mask = guided_masking(torch.zeros(2, 16), 8, 0.0)
    pred, mask = mae(x, keep, mask)
    loss = anatomical_consistency_loss(anatomy.segmenter, mae.reconstruct(x, pred, mask), anatomy.segment(x))
    loss.backward()
    assert mae.decoder_pred.weight.grad is not None and mae.decoder_pred.weight.grad.abs().sum() > 0
    assert net.weight.grad is None and not net.training
    anatomy.train()
    assert not net.training  # stays frozen in eval mode


def test_guidance_reuses_one_vesselness_pass():
    anatomy = AnatomyGuidance(VesselnessSegmenter(), prior_weight=0.5)
    x = torch.rand(2, 1, 48, 48)
    prior, seg = anatomy.prior_and_segmentation(x)
    assert torch.allclose(prior, anatomy.prior(x)) and torch.allclose(seg, anatomy.segment(x))
    g = anatomy.guidance(x, prior, seg)
    assert g.shape == x.shape and 0 <= g.min() and g.max() <= 1


def test_encoder_export_loads_into_vit_and_unetr_strictly(mae):
    state = encoder_state_dict(mae.state_dict(), num_layers=2)
    assert "norm.weight" in state and not any(k.startswith("decoder") for k in state)
    vit = ViT(in_channels=1, img_size=32, patch_size=8, hidden_size=64, mlp_dim=128, num_layers=2, num_heads=4, spatial_dims=2, qkv_bias=True, classification=True)
    assert load_encoder(vit, state) == ([], [])
    mae.eval(), vit.eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        _, hidden = vit(x)
        assert torch.allclose(vit.norm(hidden[-1]), mae.encode(x), atol=1e-5)  # the same encoder
    unetr = UNETR(in_channels=1, out_channels=2, img_size=32, feature_size=8, hidden_size=64, mlp_dim=128, num_heads=4, spatial_dims=2, qkv_bias=True)
    with pytest.raises(EncoderKeyError, match=r"missing \['blocks\.10"):
        load_encoder(unetr, state)  # UNETR needs 12 blocks
    deep = VasoMIM("vit_s16", patch_size=16, **{**TINY, "num_layers": 12})  # UNETR patches are 16 px
    missing, unexpected = load_encoder(unetr, encoder_state_dict(deep.state_dict(), 12))
    assert missing == [] and unexpected == []
    assert torch.equal(unetr.vit.blocks[11].mlp.linear1.weight, deep.blocks[11].mlp.linear1.weight)


def test_precomputed_priors_feed_the_guidance(tmp_path):
    from angiokit.data.pretrain import pretrain_dataset, pretrain_items
    from angiokit.data.synthetic import SynthConfig
    from angiokit.data.synthetic.export import write_synthetic_dataset
    from angiokit.data.priors import write_priors

    write_synthetic_dataset(str(tmp_path), n=3, cfg=SynthConfig(size=64), progress=False)
    priors = write_priors(str(tmp_path / "datalist.json"), progress=False)
    sample = pretrain_dataset(pretrain_items(priors, splits=("training", "validation", "test")), image_size=32, augment=False)[0]
    assert sample["prior"].shape == sample["image"].shape == (1, 32, 32) and 0.0 <= sample["prior"].min() and sample["prior"].max() <= 1.0
    anatomy = AnatomyGuidance(prior_weight=0.5)
    x, given = sample["image"][None].float(), sample["prior"][None].float()
    seg = anatomy.segment(x)
    assert torch.allclose(anatomy.guidance(x, prior=given, segmentation=seg), 0.5 * given + 0.5 * seg)


def test_step_maps_compute_only_what_the_step_needs():
    anatomy = AnatomyGuidance(VesselnessSegmenter(), prior_weight=0.5)
    x = torch.rand(2, 1, 48, 48)
    prior, seg = anatomy.prior_and_segmentation(x)
    guidance, segmentation = anatomy.step_maps(x, guided=True, segmentation=True)
    assert torch.allclose(guidance, anatomy.guidance(x, prior, seg)) and torch.allclose(segmentation, seg)
    assert anatomy.step_maps(x, guided=False, segmentation=False) == (None, None)
    guidance, segmentation = anatomy.step_maps(x, guided=False, segmentation=True)
    assert guidance is None and torch.allclose(segmentation, seg)
    prior_only = AnatomyGuidance(prior_weight=1.0)
    guidance, segmentation = prior_only.step_maps(x, prior=torch.ones(2, 1, 48, 48), guided=True)
    assert segmentation is None and torch.equal(guidance, torch.ones(2, 1, 48, 48))


def test_objective_is_reconstruction_plus_weighted_consistency_and_plain_mae_switches_both_off(mae):
    x = torch.rand(2, 1, 32, 32)
    torch.manual_seed(1)
    out = VasoMIMObjective(AnatomyGuidance(), guided=True, consistency_weight=0.3)(mae, x, alpha=0.5)
    assert out["alpha"] == 0.5 and out["guidance"].shape == (2, 1, 32, 32) and (out["mask"].sum(1) == 8).all()
    assert torch.allclose(out["loss_reconstruction"], mae.reconstruction_loss(x, out["pred"], out["mask"]))
    assert torch.allclose(out["loss"], out["loss_reconstruction"] + 0.3 * out["loss_consistency"]) and out["loss_consistency"] > 0
    assert VasoMIMObjective().consistency_weight == 1.0  # the official weight by default
    plain = VasoMIMObjective(guided=False, consistency_weight=0.0)
    assert plain.anatomy is None
    out = plain(mae, x, alpha=0.5)
    assert out["alpha"] == 0.0 and out["guidance"] is None and out["segmentation"] is None
    assert out["loss_consistency"] == 0 and torch.equal(out["loss"], out["loss_reconstruction"])


def test_train_step_updates_the_network(mae):
    optimizer = torch.optim.SGD(mae.parameters(), lr=0.1)
    before = mae.decoder_pred.weight.detach().clone()
    out = train_step(mae, VasoMIMObjective(guided=True, consistency_weight=0.1), optimizer, torch.rand(2, 1, 32, 32), alpha=0.5)
    assert out["loss"].requires_grad and not torch.equal(before, mae.decoder_pred.weight)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_masked_errors_are_zero_for_a_perfect_model_and_the_mean_predictor_matches_a_hand_computation(norm_pix_loss):
    m = VasoMIM("vit_s16", patch_size=8, norm_pix_loss=norm_pix_loss, **TINY)
    x = torch.rand(2, 1, 32, 32)
    keep, mask = guided_masking(torch.zeros(2, 16), 8, 0.0)
    errors = masked_patch_errors(m, x, m.targets(x), mask)  # the prediction is the target
    assert torch.allclose(errors["model"], torch.zeros(2), atol=1e-10)
    for i in range(2):
        grid = x[i, 0].reshape(4, 8, 4, 8).permute(0, 2, 1, 3).reshape(16, 64)  # row-major 8 px patches
        hidden, shown = grid[mask[i].bool()], grid[~mask[i].bool()]
        assert errors["mean_predictor"][i] == pytest.approx(((hidden - shown.mean()) ** 2).mean().item(), rel=1e-5)
        assert errors["patch_mean_oracle"][i] == pytest.approx(((hidden - hidden.mean(1, keepdim=True)) ** 2).mean().item(), rel=1e-5)
    zeros = masked_patch_errors(m, x, torch.zeros(2, 16, 64), mask)["model"]
    expected = errors["patch_mean_oracle"] if norm_pix_loss else (m.patchify(x) ** 2).mean(-1).mul(mask).sum(1) / 8
    assert torch.allclose(zeros, expected, rtol=1e-5)
