import os

import numpy as np
import pytest
import torch

from angiokit.data import AngioDataError
from angiokit.data.quality import Failure, QualityScene, _visible_loss, level_distribution, quality_config, rate, read_scores_csv, score_from_severity, visible_severities, write_quality_benchmark
from angiokit.networks import CASIQA, HFVisionEncoder, IQALoss, ViTRegressor
from angiokit.networks.cas_iqa import plcc_loss, wire_prior

TINY = dict(hidden_size=64, num_heads=2, mlp_dim=128, num_layers=2)


def test_scores_fall_monotonically_with_severity_and_raters_spread():
    severities = np.linspace(0, 1, 11)
    q = [score_from_severity(s) for s in severities]
    assert q[0] == 5.0 and q[-1] == 1.0 and np.all(np.diff(q) < 0)
    rng = np.random.default_rng(0)
    mos = [rate({"guidewire": s, "branch": 0.0, "artifact": 1.0}, rng, raters=7)["guidewire"]["mos"] for s in severities for _ in range(20)]
    means = np.array(mos).reshape(11, 20).mean(1)
    assert np.all(np.diff(means) < 0.2) and means[0] > 4.3 and means[-1] < 1.7
    r = rate({"guidewire": 0.5, "branch": 0.0, "artifact": 1.0}, rng)
    assert sum(r["guidewire"]["distribution"]) == pytest.approx(1.0) and r["branch"]["mos"] >= 4 and r["artifact"]["mos"] <= 2


def test_failures_change_the_synthetic_frame_where_they_should():
    cfg = quality_config(128)
    clean = QualityScene(cfg, 5).render_all(Failure())
    erased = QualityScene(cfg, 5).render_all(Failure(guidewire=1.0, guidewire_mode="erase"))
    scene = QualityScene(cfg, 5).scene
    wire = scene.render(scene.frame_time_s(0))[2].astype(bool)
    assert wire.any()
    # the wire's pixels brighten when it is erased (it attenuated there); elsewhere only noise differs
    assert (erased["synthetic"] - clean["synthetic"])[wire].mean() > 3 * abs((erased["synthetic"] - clean["synthetic"])[~wire].mean())
    assert np.array_equal(clean["fluoro"], erased["fluoro"])  # F is the same moment, untouched
    # the labels' severities are what S visibly lost: all of an erased wire, all dropped branches,
    # and of a wire faded to half its attenuation less than half (where the display clips it
    # black, it still looks black)
    gone, removal = QualityScene(cfg, 5), Failure(guidewire=1.0, guidewire_mode="erase", branch=1.0, branch_mode="drop")
    gone.render_all(removal)
    assert gone.damage["guidewire"] > 0.9 and gone.damage["branch"] == pytest.approx(1.0, abs=0.02)
    assert visible_severities(gone.damage, removal) == {"guidewire": gone.damage["guidewire"], "branch": gone.damage["branch"], "artifact": 0.0}
    faded = QualityScene(cfg, 5)
    faded.render_all(Failure(guidewire=0.5, guidewire_mode="fade"))
    assert 0.05 < faded.damage["guidewire"] < 0.475 and faded.damage["branch"] == 0.0
    intact = QualityScene(cfg, 5)
    intact.render_all(Failure(artifact=0.7, artifact_modes=["streaks"]))
    assert intact.damage == {"guidewire": 0.0, "branch": 0.0}
    streaked = QualityScene(cfg, 5).render_all(Failure(artifact=1.0, artifact_modes=["checkerboard"]))
    hf = lambda im: np.abs(np.diff(im, axis=1)).mean()  # noqa: E731
    assert hf(streaked["synthetic"]) > 1.5 * hf(clean["synthetic"])


def test_visible_loss_counts_only_contrast_the_display_shows():
    without = np.full((1, 4), 0.8)
    # a wire faded from 0.2 to 0.5 brightness lost half its contrast; one clipped black (0) before
    # and after lost nothing; a blur's darkening beside the wire does not make up for its loss
    assert _visible_loss(without, np.array([[0.2, 0.2, 0.8, 0.8]]), np.array([[0.5, 0.5, 0.8, 0.8]])) == pytest.approx(0.5)
    assert _visible_loss(without, np.zeros((1, 4)), np.zeros((1, 4))) == 0.0
    assert _visible_loss(without, np.array([[0.2, 0.8, 0.8, 0.8]]), np.array([[0.5, 0.5, 0.8, 0.8]])) == pytest.approx(0.5)
    # a wire the frame barely shows (contrast 0.1 in all): losing all of it is a share of the
    # floor (contrast 0.4 summed) where that is more, of the wire's own contrast where it is less
    faint, gone = np.array([[0.7, 0.8, 0.8, 0.8]]), without.copy()
    assert _visible_loss(without, faint, gone) == pytest.approx(1.0)
    assert _visible_loss(without, faint, gone, floor=0.4) == pytest.approx(0.25)
    assert _visible_loss(without, faint, gone, floor=0.05) == pytest.approx(1.0)


def test_an_erased_wire_that_c_barely_shows_is_not_labelled_wholly_lost():
    cfg = quality_config(128)
    erase = Failure(guidewire=1.0, guidewire_mode="erase")
    # seed 5: C shows the wire on the background; seed 22: it runs inside iodine-filled vessels,
    # where C shows a small part of its contrast on the bare background (F)
    shown, hidden = QualityScene(cfg, 5), QualityScene(cfg, 22)
    shown.render_all(erase), hidden.render_all(erase)
    assert shown.damage["guidewire"] > 0.9
    assert 0.05 < hidden.damage["guidewire"] < 0.5


def test_training_augmentation_turns_s_f_and_c_together(tmp_path):
    from angiokit.data.quality_dataset import quality_transforms
    from angiokit.data.writers import write_png

    pattern = np.zeros((16, 16), np.uint8)
    pattern[2:5, 1:12] = 200  # no flip or quarter turn maps it onto itself
    item = {"target": np.zeros((3, 6), np.float32)}
    for key in ("image", "fluoro", "reference"):
        item[key] = str(tmp_path / f"{key}.png")
        write_png(item[key], pattern if key != "reference" else 255 - pattern)
    transform = quality_transforms(16, augment=True)
    seen = set()
    for seed in range(24):
        transform.set_random_state(seed)
        out = transform(dict(item))
        assert torch.equal(out["image"], out["fluoro"]) and torch.allclose(out["image"] + out["reference"], torch.ones_like(out["image"]))
        seen.add(out["image"].numpy().tobytes())
    assert len(seen) == 8  # all eight orientations


def test_benchmark_files_and_csv_round_trip(tmp_path):
    path = write_quality_benchmark(str(tmp_path), n=6, size=64, seed=3, progress=False)
    rows = read_scores_csv(path)
    assert len(rows) == 6 and {r["split"] for r in rows} == {"training", "validation", "test"}
    r = rows[0]
    assert r["aux_fluoro"].endswith(f"{r['case']}_aux_fluoro.png") and r["aux_reference"].endswith("_aux_reference.png")
    assert 1 <= r["guidewire_mos"] <= 5 and sum(r["branch_distribution"]) == pytest.approx(1.0, abs=0.02)
    again = write_quality_benchmark(str(tmp_path / "again"), n=6, size=64, seed=3, progress=False, workers=2)
    assert open(path).read() == open(again).read()  # deterministic by seed, whatever the workers
    for name in ("q00000.png", "q00005_aux_fluoro.png", "q00003_aux_reference.png"):
        assert (tmp_path / "images" / name).read_bytes() == (tmp_path / "again" / "images" / name).read_bytes()


def test_growing_a_benchmark_renders_only_the_new_cases(tmp_path):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    write_quality_benchmark(str(grown), n=3, size=64, seed=2, progress=False)
    first = grown / "images" / "q00001.png"
    os.utime(first, ns=(1, 1))  # a mark a rewrite would erase
    path = write_quality_benchmark(str(grown), n=5, size=64, seed=2, progress=False)
    assert first.stat().st_mtime_ns == 1  # case 1 was kept, not rendered again
    # the same files as a benchmark of five written at once
    assert open(path).read() == open(write_quality_benchmark(str(fresh), n=5, size=64, seed=2, progress=False)).read()
    assert (grown / "images" / "q00004_aux_fluoro.png").read_bytes() == (fresh / "images" / "q00004_aux_fluoro.png").read_bytes()
    # another seed holds other cases: nothing is kept
    write_quality_benchmark(str(grown), n=5, size=64, seed=4, progress=False)
    assert first.stat().st_mtime_ns != 1


def test_cached_benchmark_is_regenerated_when_made_otherwise(tmp_path):
    import json

    from angiokit.data.quality import LABEL_RULE
    from angiokit.data.quality_dataset import default_benchmark

    path = default_benchmark(str(tmp_path), n=3, size=64)
    first = read_scores_csv(path)
    assert len(read_scores_csv(default_benchmark(str(tmp_path), n=5, size=64))) == 5
    again = read_scores_csv(path)[:3]
    assert [r["guidewire_mos"] for r in again] == [r["guidewire_mos"] for r in first]
    settings = tmp_path / "benchmark.json"
    assert json.loads(settings.read_text())["label_rule"] == LABEL_RULE
    # a cache made by another label rule, or before the settings were recorded, is remade
    stamp = (tmp_path / "scores.csv").stat().st_mtime_ns
    default_benchmark(str(tmp_path), n=5, size=64)
    assert (tmp_path / "scores.csv").stat().st_mtime_ns == stamp  # the same benchmark is reused
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "label_rule": "an older rule"}))
    default_benchmark(str(tmp_path), n=5, size=64)
    assert json.loads(settings.read_text())["label_rule"] == LABEL_RULE
    settings.unlink()
    default_benchmark(str(tmp_path), n=5, size=64)
    assert settings.is_file()
    default_benchmark(str(tmp_path), n=5, size=48)  # another image size
    assert json.loads(settings.read_text())["size"] == 48


def test_importer_accepts_plain_scores_and_names_bad_rows(tmp_path):
    good = tmp_path / "scores.csv"
    good.write_text("synthetic,aux_fluoro,guidewire,branch,artifact\nimgs/a.png,,4.5,3,1\n")
    rows = read_scores_csv(str(good))
    assert rows[0]["image"] == str(tmp_path / "imgs" / "a.png") and "aux_fluoro" not in rows[0]
    assert rows[0]["guidewire_distribution"] == pytest.approx([0, 0, 0, 0.5, 0.5]) and rows[0]["branch_mos"] == 3
    assert level_distribution(1.0).tolist() == [1, 0, 0, 0, 0]
    bad = tmp_path / "bad.csv"
    bad.write_text("synthetic,guidewire,branch,artifact\na.png,7,3,3\n")
    with pytest.raises(AngioDataError, match="row 2: guidewire score 7.0 is outside 1-5"):
        read_scores_csv(str(bad))
    (tmp_path / "nocol.csv").write_text("image,score\na.png,3\n")
    with pytest.raises(AngioDataError, match="'synthetic' column"):
        read_scores_csv(str(tmp_path / "nocol.csv"))


def test_router_weights_sum_to_one_and_missing_paths_get_none():
    model = CASIQA("vit_s16", img_size=32, **TINY)
    x = torch.rand(3, 1, 32, 32)
    logits = model(x, x, x)
    w = model.last_path_weights
    assert logits.shape == (3, 3, 5) and w.shape == (3, 3, 3)
    assert torch.allclose(w.sum(-1), torch.ones(3, 3)) and (w > 0).all()
    model(x, None, x)
    assert torch.all(model.last_path_weights[..., 1] == 0) and torch.allclose(model.last_path_weights.sum(-1), torch.ones(3, 3))
    model(x, x, x, fluoro_available=torch.tensor([True, False, True]))
    assert model.last_path_weights[1, :, 1].eq(0).all() and model.last_path_weights[0, :, 1].gt(0).all()
    assert torch.allclose(model.last_token_weights.sum(-1), torch.ones(3, 3, 3))
    scores = CASIQA.scores(logits)
    assert ((scores >= 1) & (scores <= 5)).all()
    # a hidden auxiliary frame leaks nothing into the other path (the iodine map C - F needs both)
    model.eval()
    f, c = torch.rand(3, 1, 32, 32), torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        hidden = model(x, f, c, fluoro_available=torch.tensor([False, False, False]))
        assert torch.allclose(hidden, model(x, None, c), atol=1e-5)


def test_residuals_keep_every_pixel_when_the_encoder_sees_a_smaller_frame():
    torch.manual_seed(0)
    model = CASIQA("vit_s16", img_size=64, encoder_size=32, **TINY).eval()
    s, f, c = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    # a one-pixel checkerboard: every 2 x 2 block averages to zero, so S at 32 px is unchanged
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    changed = s + 0.05 * (((yy + xx) % 2) * 2 - 1)
    assert model.vit.patch_embedding.n_patches == 4  # the ViT's grid at 32 px, patch 16
    with torch.no_grad():
        assert torch.allclose(model.encode_image(s), model.encode_image(changed), atol=1e-5)
        assert not torch.allclose(model(s, f, c), model(changed, f, c), atol=1e-4)  # the residuals see it
        coarse = CASIQA("vit_s16", img_size=32, **TINY).eval()  # residuals compared at 32 px do not
        down = torch.nn.functional.avg_pool2d
        assert torch.allclose(coarse(down(s, 2), down(f, 2), down(c, 2)), coarse(down(changed, 2), down(f, 2), down(c, 2)), atol=1e-5)
        regressor = ViTRegressor("vit_s16", img_size=64, encoder_size=32, **TINY).eval()
        assert regressor(s).shape == (2, 3) and torch.allclose(regressor(s), regressor(changed), atol=1e-5)
    with pytest.raises(ValueError, match="encoder_size 48 must divide img_size 64"):
        CASIQA("vit_s16", img_size=64, encoder_size=48, **TINY)


def test_metrics_are_prompts_new_prompts_need_no_code():
    model = CASIQA("vit_s16", img_size=32, **TINY)
    x = torch.rand(2, 1, 32, 32)
    new = model(x, x, x, prompts=["Is the catheter tip visible?", "How sharp are the vessel edges?"])
    assert new.shape == (2, 2, 5)
    a, b = model(x, x, x, prompts=["How visible is the guidewire?"]), model(x, x, x, prompts=["How free of artifacts is it?"])
    assert not torch.allclose(a, b)  # the question changes the answer


def test_plcc_loss_bounded_for_near_constant_scores():
    # an untrained model's scores are near-constant; 1 - PLCC's gradient grows as 1/std(pred)
    # and then swamped the cross-entropy (the model learned batch ranks at score std ~0.005)
    torch.manual_seed(0)
    target = torch.rand(16, 3) * 4 + 1
    pred = (3.0 + 1e-3 * torch.randn(16, 3)).requires_grad_()
    plcc_loss(pred, target).backward()
    assert pred.grad.abs().max() < 0.5
    spread = target + 0.5 * torch.randn(16, 3)  # spread predictions: the plain 1 - PLCC
    r = [np.corrcoef(spread[:, j].numpy(), target[:, j].numpy())[0, 1] for j in range(3)]
    assert plcc_loss(spread, target).item() == pytest.approx(1.0 - float(np.mean(r)), abs=1e-5)


def test_correlation_intervals_hold_the_estimate_and_narrow_with_more_cases():
    from angiokit.metrics.correlation import correlation, correlation_interval

    rng = np.random.default_rng(0)
    truth = rng.normal(size=2000)
    pred = truth + rng.normal(size=2000)
    widths = []
    for n in (100, 2000):
        low, high = correlation_interval("srcc", pred[:n], truth[:n], resamples=300)
        assert low < correlation("srcc", pred[:n], truth[:n]) < high
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0]  # the width falls as 1 / sqrt(n)
    assert correlation_interval("krcc", pred[:100], truth[:100], resamples=300, seed=3) == correlation_interval("krcc", pred[:100], truth[:100], resamples=300, seed=3)
    assert all(np.isnan(correlation_interval("plcc", pred[:2], truth[:2])))


def test_severity_ceiling_without_ties_is_lower_and_falls_with_what_is_unseen():
    from angiokit.metrics.correlation import correlation, severity_ceiling

    rng = np.random.default_rng(0)
    severity = np.where(rng.random(900) < 1 / 3, 0.0, rng.random(900))  # a third intact, as the wires
    mos = np.clip(5 - 4 * severity + 0.3 * rng.normal(size=900), 1, 5)
    tied = severity_ceiling(severity, mos)
    assert tied == pytest.approx(correlation("srcc", -severity, mos))
    untied = [severity_ceiling(severity, mos, unseen_below=t, repeats=20) for t in (0.0, 0.05, 0.2)]
    assert tied > untied[0] > untied[1] > untied[2]  # the intact cases' MOS is noise; ties hide it
    assert severity_ceiling(severity, mos, 0.05, repeats=5, seed=1) == severity_ceiling(severity, mos, 0.05, repeats=5, seed=1)


def test_ablations_and_losses():
    x = torch.rand(4, 1, 32, 32)
    target = torch.cat([torch.softmax(torch.randn(4, 3, 5), -1), torch.rand(4, 3, 1) * 4 + 1], -1)
    for model in (CASIQA("vit_s16", img_size=32, auxiliary=(), **TINY), CASIQA("vit_s16", img_size=32, fusion="mean", **TINY), ViTRegressor("vit_s16", img_size=32, **TINY)):
        out = model(x, x, x)
        loss = IQALoss(plcc_weight=0.5)(out, target)
        loss.backward()
        assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="fusion"):
        CASIQA("vit_s16", fusion="concat", **TINY)


def test_orientation_averaging_turns_auxiliary_frames_with_s_and_averages_levels():
    from angiokit.engines.inferers import OrientationAveragingInferer

    torch.manual_seed(0)
    model = CASIQA("vit_s16", img_size=32, **TINY).eval()
    s, f, c = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    flags = torch.tensor([True, False])
    averaged = OrientationAveragingInferer(8)
    turned = OrientationAveragingInferer.orient
    with torch.no_grad():
        out = averaged(s, model, fluoro=f, reference=c, fluoro_available=flags)
        # the same scene in another orientation: the same average, where one view differs
        for k in (1, 6):
            again = averaged(turned(s, k), model, fluoro=turned(f, k), reference=turned(c, k), fluoro_available=flags)
            assert torch.allclose(out, again, atol=1e-5)
        views = [model(turned(s, k), fluoro=turned(f, k), reference=turned(c, k), fluoro_available=flags) for k in range(8)]
        assert not torch.allclose(views[0], views[1], atol=1e-4)
        # the expected level is the mean of the eight expected levels
        assert torch.allclose(CASIQA.scores(out), torch.stack([CASIQA.scores(v) for v in views]).mean(0), atol=1e-5)
        # as is: the plain prediction
        assert torch.allclose(OrientationAveragingInferer(1)(s, model, fluoro=f, reference=c, fluoro_available=flags).softmax(-1), views[0].softmax(-1), atol=1e-6)

    # F turned with S: a scorer of S - F sees no difference when F is S
    def residual(image, fluoro=None, **_):
        return (image - fluoro).abs().flatten(1).sum(1, keepdim=True)

    assert OrientationAveragingInferer(8)(s, residual, fluoro=s.clone()).abs().max() == 0
    with pytest.raises(ValueError, match="orientations"):
        OrientationAveragingInferer(3)
    with pytest.raises(ValueError, match="square"):
        OrientationAveragingInferer(8)(torch.rand(1, 1, 32, 16), residual, fluoro=torch.rand(1, 1, 32, 16))


def test_hugging_face_backbone_from_a_local_path(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(tmp_path)
    encoder = HFVisionEncoder(str(tmp_path), dim=64)
    model = CASIQA("vit_s16", img_size=32, image_encoder=encoder, **TINY)
    assert model.vit is None and model(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)).shape == (2, 3, 5)


def _constructed_cases(n, seed, size=64):
    """The constructed case: every S is a contrast-free frame without a guidewire; F is the same
    moment with a guidewire in the 'erased' cases (score 1: the synthesis lost it) and without one
    in the 'no wire' cases (score 5: nothing was lost). S alone cannot tell them apart."""
    items = []
    for i in range(n):
        erased = i % 2 == 0
        scenes = []
        for wire in (False, erased):
            cfg = quality_config(size)
            cfg.guidewire_probability, cfg.guidewire_radius_mm = (1.0 if wire else 0.0), 1.5
            scene = QualityScene(cfg, seed + i).scene  # the same seed: the same anatomy and moment
            scenes.append(scene)
        t = scenes[0].frame_time_s(0)
        s_img = scenes[0].render(t, contrast=0.0)[0]
        scenes[1].render(t, contrast=0.0)  # F gets its own quantum noise
        f_img = scenes[1].render(t, contrast=0.0)[0]
        items.append((torch.from_numpy(s_img)[None], torch.from_numpy(f_img)[None], 1.0 if erased else 5.0))
    return items


class _Patches(torch.nn.Module):
    """A one-layer patch encoder: what is under test is MUST's use of the auxiliary image, and a
    ViT from scratch needs far more steps than a test can afford to learn to see a wire."""

    def __init__(self, dim: int = 64, patch: int = 8):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, dim, patch, patch)

    def forward(self, x):
        return torch.nn.functional.gelu(self.conv(x)).flatten(2).transpose(1, 2)


def test_removing_the_fluoro_frame_moves_the_guidewire_score_towards_uncertainty():
    torch.manual_seed(0)
    train, held_out = _constructed_cases(32, 1000), _constructed_cases(8, 5000)
    model = CASIQA("vit_s16", img_size=64, auxiliary=("fluoro",), aux_dropout=0.3, prompts={"guidewire": "How visible is the guidewire?"}, image_encoder=_Patches(), **TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = IQALoss()
    s, f, y = (torch.stack(v) if i < 2 else torch.tensor(v) for i, v in enumerate(zip(*train)))
    target = torch.zeros(len(y), 1, 6)
    target[torch.arange(len(y)), 0, (y - 1).long()] = 1.0
    target[:, 0, 5] = y
    for step in range(80):
        idx = torch.randint(0, len(y), (16,))
        loss = loss_fn(model(s[idx], f[idx]), target[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    hs, hf, hy = (torch.stack(v) if i < 2 else torch.tensor(v) for i, v in enumerate(zip(*held_out)))
    with torch.no_grad():
        with_f, without_f = CASIQA.scores(model(hs, hf))[:, 0], CASIQA.scores(model(hs))[:, 0]
    erased, clean = hy == 1, hy == 5
    assert with_f[erased].mean() < with_f[clean].mean() - 1.0  # with F the missing wire is seen
    assert without_f[erased].mean() > with_f[erased].mean() + 0.5  # without F it goes unnoticed
    assert without_f[clean].mean() < with_f[clean].mean() - 0.5


def test_wire_prior_marks_thin_dark_lines_not_shading_or_wide_vessels():
    _, x = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    fluoro = 0.4 + 0.3 * (x / 128)  # the anatomy's slow shading
    fluoro = fluoro - 0.1 * ((x - 40).abs() < 1)  # a wire, 1 px
    fluoro = fluoro - 0.1 * ((x - 90).abs() < 12)  # something 24 px wide
    prior = wire_prior(fluoro[None, None])[0, 0]
    on_wire, shading, wide = prior[:, 40].mean(), prior[:, 10:30].mean(), prior[:, 84:96].mean()
    assert on_wire > 0.08
    assert shading < 0.005 and wide < 0.005
