"""Measure the gap between the synthetic angiogram engine and real labelled / unlabelled frames.

    python -m apps.synth_gap --out docs --n 40                  # docs/synthetic_vs_real.md + 4 figures
    python -m apps.synth_gap --out /tmp/gap --n 4 --limit 5     # a quick plumbing check

Sets: the engine rendered at 300 px (DCA1's size) and 512 px (XCAD's), ``n`` frames each from
the fixed seeds ``sample_seed(seed, 0..n-1)`` (the same scenes at both sizes); DCA1 (80 frames,
vessel masks) and XCAD (10 frames, vessel masks) for every statistic; ARCADE stenosis *train*
(1,000 frames) and the Kragujevac cine frames (79) for the statistics that need no vessel mask
(spectrum, noise, field of view, grey levels). Statistics: ``angiokit.data.synthetic.gap``.

Writes OUT/synthetic_vs_real.md and OUT/synthetic_vs_real_{widths,contrast,spectrum,fov}.png.
"""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import fire
import numpy as np

from angiokit.data.synthetic import gap
from angiokit.data.synthetic.stats import COLUMNS, image_statistics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("ANGIOKIT_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
STEM = "synthetic_vs_real"
COLOURS = {"synthetic 300 px": "tab:orange", "DCA1": "tab:blue", "DCA1 train": "tab:blue", "synthetic 512 px": "tab:red", "XCAD": "tab:green", "ARCADE train": "tab:purple", "Kragujevac": "tab:brown"}
BLACK = 2.0
"""Grey levels <= this count as clipped black (8-bit scale)."""
STYLES = {"synthetic 300 px": "--", "synthetic 512 px": "--"}


# ---- frame sources ---------------------------------------------------------------------------


@dataclass
class FrameSet:
    name: str
    description: str
    refs: List
    """One entry per frame: a seed (synthetic) or (image path, mask path or None)."""
    load: Callable[[object], Tuple[np.ndarray, Optional[np.ndarray]]]
    """ref -> (grey frame on the 8-bit scale as float32 [H, W], bool vessel mask [H, W] or None)."""
    labelled: bool


def synthetic_set(size: int, n: int, seed: int, preset: str = "default") -> FrameSet:
    from angiokit.data.synthetic import PRESETS, default_config, synthesize
    from angiokit.data.synthetic.export import sample_seed
    from angiokit.data.writers import to_uint

    if preset not in PRESETS:
        raise ValueError(f"unknown engine preset {preset!r}; the presets are {sorted(PRESETS)}")
    cfg = default_config(size=int(size), **PRESETS[preset])

    def load(s):
        sample = synthesize(cfg, s)
        return to_uint(sample.image[0], 8).astype(np.float32), sample.vessel[0] > 0

    spacing = cfg.pixel_spacing_mm
    return FrameSet(f"synthetic {size} px", f"engine {'defaults' if preset == 'default' else 'preset ' + preset}, {size} x {size} px ({spacing:.3f} mm/px), seeds sample_seed({seed}, 0..{n - 1})",
                    [sample_seed(seed, i) for i in range(n)], load, True)


def _load_real(ref):
    from angiokit.data.readers import load_frame

    image_path, mask_path = ref
    image = load_frame(image_path)[0].astype(np.float32)
    mask = load_frame(mask_path)[0] > 127 if mask_path else None  # DCA1 masks carry stray grey values
    return image, mask


def real_set(name: str, folder: str, description: str, labelled: bool, limit: Optional[int] = None, pattern: str = "*.png") -> Optional[FrameSet]:
    images = sorted(glob.glob(os.path.join(folder, "images", pattern)))
    if not images:
        print(f"skipped {name}: no PNG frames in {folder}/images")
        return None
    if limit:
        images = images[: int(limit)]
    refs = [(p, os.path.join(folder, "masks", os.path.basename(p)) if labelled else None) for p in images]
    return FrameSet(name, description, refs, _load_real, labelled)


def frame_sets(data: str, n: int, seed: int, limit: Optional[int], preset: str = "default", tuning_only: bool = False) -> List[FrameSet]:
    """``tuning_only``: only the real frames a label-free run may be tuned on - DCA1's 40
    training frames (tr_*) and the unlabelled sets; no DCA1 test frame and no XCAD (all of
    XCAD's 10 frames are test frames)."""
    dca1 = (("DCA1 train", "40 training frames (tr_*), 300 x 300 px, vessel masks", "tr_*.png") if tuning_only
            else ("DCA1", "80 frames (40 tr + 40 te), 300 x 300 px, vessel masks", "*.png"))
    sets = [
        synthetic_set(300, n, seed, preset),
        real_set(dca1[0], os.path.join(data, "dca1"), dca1[1], True, limit, dca1[2]),
        synthetic_set(512, n, seed, preset),
        None if tuning_only else real_set("XCAD", os.path.join(data, "xcad_samples"), "10 labelled test frames, 512 x 512 px, vessel masks", True, limit),
        real_set("ARCADE train", os.path.join(data, "arcade_stenosis_train"), "stenosis train split (1,000 frames, 512 px); no vessel masks", False, limit),
        real_set("Kragujevac", os.path.join(data, "xa_cine_kragujevac"), "79 clinical cine frames (lossy JPEG sources), 512 px; no vessel masks", False, limit),
    ]
    return [s for s in sets if s is not None]


# ---- per-frame measurements ------------------------------------------------------------------


@dataclass
class SetResult:
    frames: int = 0
    overview: List[Dict[str, float]] = field(default_factory=list)
    widths: List[np.ndarray] = field(default_factory=list)
    class_share: List[Dict[str, float]] = field(default_factory=list)
    contrast: List[Dict[str, float]] = field(default_factory=list)
    contrast_centreline: List[Dict[str, float]] = field(default_factory=list)
    contrast_curve: List[np.ndarray] = field(default_factory=list)
    psd_whole: List[np.ndarray] = field(default_factory=list)
    psd_background: List[np.ndarray] = field(default_factory=list)
    noise: List[float] = field(default_factory=list)
    noise_field: List[float] = field(default_factory=list)
    fov_fraction: List[float] = field(default_factory=list)
    fov_shape: List[str] = field(default_factory=list)
    black: List[float] = field(default_factory=list)
    freqs: Optional[np.ndarray] = None


def measure_frame(image: np.ndarray, mask: Optional[np.ndarray], result: SetResult) -> None:
    """Every statistic of one frame, appended to ``result``."""
    fov = gap.detect_field_of_view(image)
    result.frames += 1
    result.overview.append(image_statistics(image, mask))
    result.fov_fraction.append(fov.outside_fraction)
    result.fov_shape.append(fov.shape)
    result.black.append(float((image <= BLACK).mean()))
    result.noise.append(gap.noise_sigma_in(image))
    result.noise_field.append(gap.noise_sigma_in(image, fov.inside))
    freqs, psd = gap.background_spectrum(image, None, fov.inside)
    result.freqs = freqs
    result.psd_whole.append(psd)
    if mask is None:
        return
    skeleton = gap.skeleton_width_map(mask)
    widths = skeleton[skeleton > 0]
    wmap = gap.vessel_width_map(mask, skeleton)
    result.widths.append(widths)
    result.class_share.append(gap.width_class_fractions(widths))
    result.contrast.append(gap.contrast_by_width(image, mask, valid=fov.inside, width_map=wmap))
    result.contrast_centreline.append(gap.contrast_by_width(image, mask, valid=fov.inside, width_map=skeleton))
    result.contrast_curve.append(gap.contrast_vs_width(image, mask, valid=fov.inside, width_map=wmap))
    result.psd_background.append(gap.background_spectrum(image, mask, fov.inside)[1])


def measure_set(frame_set: FrameSet, progress: bool = True) -> SetResult:
    from tqdm import tqdm

    result = SetResult()
    for ref in tqdm(frame_set.refs, desc=frame_set.name, unit="frame", disable=not progress):
        image, mask = frame_set.load(ref)
        measure_frame(image, mask, result)
    return result


# ---- summaries -------------------------------------------------------------------------------


def mean_sd(values) -> Tuple[float, float, int]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    return (float(v.mean()), float(v.std()), len(v)) if len(v) else (float("nan"), float("nan"), 0)


def pooled_widths(r: SetResult) -> np.ndarray:
    return np.concatenate(r.widths) if r.widths else np.zeros(0)


def nan_mean_sd_count(stack: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise mean, sd and count of the finite values (NaN where a column has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no vessels of that width
        return np.nanmean(stack, axis=0), np.nanstd(stack, axis=0), np.sum(np.isfinite(stack), axis=0)


def mean_psd(psds: List[np.ndarray]) -> np.ndarray:
    return nan_mean_sd_count(np.stack(psds))[0] if psds else np.zeros(0)


def spectrum_numbers(freqs, psds) -> Dict[str, List[float]]:
    return {"slope": [gap.spectral_slope(freqs, p) for p in psds], "floor": [gap.band_power(freqs, p) for p in psds], "mid": [gap.band_power(freqs, p, (0.05, 0.1)) for p in psds],
            "high_slope": [gap.spectral_slope(freqs, p, (0.2, 0.5)) for p in psds]}


def summarise(sets: List[FrameSet], results: Dict[str, SetResult]) -> Dict[str, Dict]:
    """The numbers the tables and bullets are made of, per set."""
    out = {}
    for s in sets:
        r = results[s.name]
        shapes = np.asarray(r.fov_shape)
        fractions = np.asarray(r.fov_fraction)
        d = {
            "frames": r.frames,
            "labelled": s.labelled,
            "noise": mean_sd(r.noise),
            "noise_field": mean_sd(r.noise_field),
            "fov_circular": float((shapes == "circular").mean()),
            "fov_other": float((shapes == "other").mean()),
            "black": mean_sd(r.black),
            "black_frames": float((np.asarray(r.black) >= 0.01).mean()),
            "noise_quantiles": tuple(float(q) for q in np.percentile(r.noise_field, [10, 50, 90])),
            "fov_any": float((shapes != "full").mean()),
            "fov_outside": mean_sd(fractions),
            "fov_outside_when_any": mean_sd(fractions[shapes != "full"]),
            "spectrum_whole": {k: mean_sd(v) for k, v in spectrum_numbers(r.freqs, r.psd_whole).items()},
            "overview": {k: mean_sd([o.get(k, np.nan) for o in r.overview]) for k, _ in COLUMNS},
        }
        if s.labelled:
            w = pooled_widths(r)
            d["width_pct"] = gap.width_percentiles(w)
            d["width_median_per_frame"] = mean_sd([np.median(x) for x in r.widths if len(x)])
            d["width_p95_per_frame"] = mean_sd([np.percentile(x, 95) for x in r.widths if len(x)])
            d["class_share"] = gap.width_class_fractions(w)
            d["contrast"] = {name: mean_sd([c[name] for c in r.contrast]) for name, _, _ in gap.WIDTH_CLASSES}
            d["contrast_centreline"] = {name: mean_sd([c[name] for c in r.contrast_centreline]) for name, _, _ in gap.WIDTH_CLASSES}
            d["contrast_all"] = mean_sd([o.get("contrast", np.nan) for o in r.overview])
            d["spectrum_background"] = {k: mean_sd(v) for k, v in spectrum_numbers(r.freqs, r.psd_background).items()}
        out[s.name] = d
    return out


# ---- figures ---------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str) -> str:
    from angiokit.data.writers import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    _plt().close(fig)
    return path


def _pairs(sets: List[FrameSet]) -> List[Tuple[str, List[str]]]:
    """Panels of sets at one resolution: (title, [set names])."""
    names = {s.name for s in sets if s.labelled}
    panels = [("300 x 300 px frames", ["synthetic 300 px", "DCA1", "DCA1 train"]), ("512 x 512 px frames", ["synthetic 512 px", "XCAD"])]
    return [(t, [n for n in members if n in names]) for t, members in panels if any(n in names for n in members)]


def widths_figure(sets, results, path: str) -> str:
    plt = _plt()
    panels = _pairs(sets)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    bins = gap.WIDTH_BINS
    for ax, (title, names) in zip(axes[0], panels):
        for name in names:
            w = pooled_widths(results[name])
            density = gap.width_histogram(w, bins) / np.diff(bins)
            p = gap.width_percentiles(w)
            ax.stairs(density, bins, color=COLOURS[name], linestyle=STYLES.get(name, "-"), linewidth=2, label=f"{name}: median {p['p50']:.1f}, p95 {p['p95']:.1f} px")
            ax.axvline(p["p50"], color=COLOURS[name], linestyle=":", linewidth=1)
        for edge in (3, 8):
            ax.axvline(edge, color="0.6", linewidth=0.8)
        for x, text, ha in ((2.25, "thin", "center"), (5.5, "medium", "center"), (8.4, "wide (>= 8 px)", "left")):
            ax.text(x, 0.98, text, transform=ax.get_xaxis_transform(), fontsize=7, color="0.35", va="top", ha=ha)
        ax.set_title(f"Vessel width, {title}")
        ax.set_xlabel("vessel width at the centreline (px, 2 x distance transform)")
        ax.set_ylabel("share of vessel length per px of width")
        ax.set_xlim(1.5, 25)
        ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.9), title="dotted: medians", title_fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def contrast_figure(sets, results, summary, path: str) -> str:
    plt = _plt()
    names = [s.name for s in sets if s.labelled]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    classes = [c for c, _, _ in gap.WIDTH_CLASSES]
    step = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        means = [summary[name]["contrast"][c][0] for c in classes]
        sds = [summary[name]["contrast"][c][1] for c in classes]
        x = np.arange(len(classes)) + (i - (len(names) - 1) / 2) * step
        ax.bar(x, means, width=step * 0.95, yerr=sds, capsize=3, color=COLOURS[name], alpha=0.85, label=name, hatch="//" if "synthetic" in name else None, edgecolor="white")
    ax.set_xticks(np.arange(len(classes)))
    ax.set_xticklabels(["thin (< 3 px)", "medium (3-8 px)", "wide (>= 8 px)"])
    ax.set_ylabel("contrast = 1 - vessel grey / ring grey")
    ax.set_title("Vessel contrast by width class (mean ± sd over frames)")
    ax.legend(fontsize=8)
    ax = axes[1]
    bins = gap.WIDTH_BINS
    centres = np.sqrt(bins[:-1] * bins[1:])
    for name in names:
        curves = np.stack(results[name].contrast_curve)
        m, s, k = nan_mean_sd_count(curves)
        ok = k >= max(2, 0.1 * len(curves))
        ax.plot(centres[ok], m[ok], marker="o", markersize=3, color=COLOURS[name], linestyle=STYLES.get(name, "-"), label=name)
        ax.fill_between(centres[ok], (m - s)[ok], (m + s)[ok], color=COLOURS[name], alpha=0.12)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xticks([2, 3, 5, 8, 12, 20])
    ax.set_xticklabels(["2", "3", "5", "8", "12", "20"])
    ax.set_xlabel("vessel width (px, at each set's own resolution)")
    ax.set_ylabel("contrast (mean ± sd over frames)")
    ax.set_title("Contrast against vessel width")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def spectrum_figure(sets, results, path: str) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = [("Whole central crop (vessels included), every set", [s.name for s in sets], "psd_whole"),
              ("Vessel-free background (masked vessels filled), labelled sets", [s.name for s in sets if s.labelled], "psd_background")]
    for ax, (title, names, key) in zip(axes, panels):
        for name in names:
            r = results[name]
            psd = mean_psd(getattr(r, key))
            ok = np.isfinite(psd)
            ax.loglog(r.freqs[ok], psd[ok], color=COLOURS[name], linestyle=STYLES.get(name, "-"), linewidth=2, label=f"{name} (n={r.frames})")
        for band in (gap.SLOPE_BAND, gap.HIGH_BAND):
            ax.axvspan(*band, color="0.9", zorder=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("spatial frequency (cycles / pixel)")
        ax.legend(fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("power spectral density (grey level² · px²)")
    for ax in axes:
        ax.text(np.sqrt(np.prod(gap.SLOPE_BAND)), 0.97, "slope band", transform=ax.get_xaxis_transform(), fontsize=8, color="0.4", ha="center", va="top")
        ax.text(np.sqrt(np.prod(gap.HIGH_BAND)), 0.97, "noise\nfloor", transform=ax.get_xaxis_transform(), fontsize=8, color="0.4", ha="center", va="top")
    fig.suptitle("Background texture: radially averaged power spectrum of the central half of the frame (mean over frames)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path)


def fov_example(frame_set: FrameSet, result: SetResult) -> int:
    """Index of a representative frame: of the set's most common non-full field shape, the one
    with the median outside fraction; the first frame when every field is full."""
    shapes = np.asarray(result.fov_shape)
    kinds = [k for k in ("circular", "other") if (shapes == k).any()]
    if not kinds:
        return 0
    kind = max(kinds, key=lambda k: (shapes == k).sum())
    idx = np.nonzero(shapes == kind)[0]
    fractions = np.asarray(result.fov_fraction)[idx]
    return int(idx[np.argsort(fractions)[len(idx) // 2]])


def fov_figure(sets, results, path: str) -> str:
    plt = _plt()
    order = [n for n in ("synthetic 512 px", "DCA1", "DCA1 train", "XCAD", "ARCADE train", "Kragujevac") if n in results]
    by_name = {s.name: s for s in sets}
    fig, axes = plt.subplots(1, len(order), figsize=(2.9 * len(order), 3.5), squeeze=False)
    for ax, name in zip(axes[0], order):
        s, r = by_name[name], results[name]
        i = fov_example(s, r)
        image, _ = s.load(s.refs[i])
        fov = gap.detect_field_of_view(image)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        h, w = image.shape
        if fov.shape != "full":
            ax.contour(fov.inside.astype(float), levels=[0.5], colors=["red"], linewidths=1.5)
        if fov.circle is not None:
            cy, cx, rad = fov.circle
            ax.add_patch(plt.Circle((cx, cy), rad, fill=False, color="yellow", linestyle="--", linewidth=1))
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        shapes = np.asarray(r.fov_shape)
        ax.set_title(f"{name}\nthis frame: {fov.shape}, {100 * fov.outside_fraction:.1f}% outside\n"
                     f"set: {100 * (shapes == 'circular').mean():.0f}% circular, {100 * (shapes != 'full').mean():.0f}% any border", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Detected field of view (red: edge of the exposed field; yellow dashed: fitted circle)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, path)


# ---- markdown --------------------------------------------------------------------------------


PAIRS = (("synthetic 300 px", ["DCA1", "DCA1 train"]), ("synthetic 512 px", ["XCAD", "ARCADE train", "Kragujevac"]))
"""Each synthetic size and the real sets of the same frame size (the labelled one first)."""


def _pm(ms, digits=2):
    m, s, k = ms
    return "-" if k == 0 else f"{m:.{digits}f} ± {s:.{digits}f}"


def _pct(x):
    return "-" if not np.isfinite(x) else f"{100 * x:.0f}%"


def _x(a, b):
    """'x1.8': a / b."""
    return f"x{a / b:.2f}" if b and np.isfinite(a) and np.isfinite(b) else "-"


def _span(ratios) -> str:
    """'x1.3' or 'x1.3-2.4' for a list of ratios."""
    lo, hi = min(ratios), max(ratios)
    return f"x{lo:.1f}" + (f"-{hi:.1f}" if f"{hi:.1f}" != f"{lo:.1f}" else "")


def _pairs_present(summary, labelled_only=False):
    for syn, reals in PAIRS:
        reals = [r for r in reals if r in summary and (summary[r]["labelled"] or not labelled_only)]
        if syn in summary and reals:
            yield syn, reals


def tables(sets, summary) -> Dict[str, str]:
    names = [s.name for s in sets]
    lab = [s.name for s in sets if s.labelled]
    t = {}
    rows = ["| set | frames | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for n in names:
        o = summary[n]["overview"]
        rows.append(f"| {n} | {summary[n]['frames']} | " + " | ".join(_pm(o[k], 3 if k in ("contrast", "area") else 1) for k, _ in COLUMNS) + " |")
    t["overview"] = "\n".join(rows)
    rows = ["| set | frames | p5 | p25 | median | p75 | p95 | per-frame median | per-frame p95 | share of vessel length: thin / medium / wide |", "|---" * 10 + "|"]
    for n in lab:
        d = summary[n]
        p, share = d["width_pct"], d["class_share"]
        rows.append(f"| {n} | {d['frames']} | " + " | ".join(f"{p[k]:.1f}" for k in ("p5", "p25", "p50", "p75", "p95")) +
                    f" | {_pm(d['width_median_per_frame'], 1)} | {_pm(d['width_p95_per_frame'], 1)} | " + " / ".join(_pct(share[c]) for c, _, _ in gap.WIDTH_CLASSES) + " |")
    t["widths"] = "\n".join(rows)
    rows = ["| set | thin (< 3 px) | medium (3-8 px) | wide (>= 8 px) | all vessel pixels | centreline: thin | centreline: medium | centreline: wide |", "|---" * 8 + "|"]
    for n in lab:
        d = summary[n]
        cells = [_pm(d["contrast"][c], 3) for c, _, _ in gap.WIDTH_CLASSES] + [_pm(d["contrast_all"], 3)] + [_pm(d["contrast_centreline"][c], 3) for c, _, _ in gap.WIDTH_CLASSES]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    t["contrast"] = "\n".join(rows)
    rows = ["| set | frames | beta, whole crop | mid-band PSD, whole | noise floor, whole | beta, background | mid-band PSD, background | noise floor, background |", "|---" * 8 + "|"]
    for n in names:
        d = summary[n]
        w, b = d["spectrum_whole"], d.get("spectrum_background")
        rows.append(f"| {n} | {d['frames']} | {_pm(w['slope'])} | {_pm(w['mid'], 0)} | {_pm(w['floor'], 1)} | " +
                    (f"{_pm(b['slope'])} | {_pm(b['mid'], 0)} | {_pm(b['floor'], 1)}" if b else "- | - | -") + " |")
    t["spectrum"] = "\n".join(rows)
    rows = ["| set | frames | noise sigma, whole frame | noise sigma, inside the field | p10 / median / p90 over frames (field) |", "|---" * 5 + "|"]
    for n in names:
        d = summary[n]
        q = d["noise_quantiles"]
        rows.append(f"| {n} | {d['frames']} | {_pm(d['noise'])} | {_pm(d['noise_field'])} | {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} |")
    t["noise"] = "\n".join(rows)
    rows = ["| set | frames | circular field | other dark border | any border | outside fraction, all frames | outside fraction, frames with a border | clipped black (grey <= 2), share of pixels | frames with >= 1% clipped black |", "|---" * 9 + "|"]
    for n in names:
        d = summary[n]
        rows.append(f"| {n} | {d['frames']} | {_pct(d['fov_circular'])} | {_pct(d['fov_other'])} | {_pct(d['fov_any'])} | {_pm(d['fov_outside'], 3)} | "
                    f"{_pm(d['fov_outside_when_any'], 3)} | {_pm(d['black'], 3)} | {_pct(d['black_frames'])} |")
    t["fov"] = "\n".join(rows)
    return t


def section_bullets(summary) -> Dict[str, List[str]]:
    """'What it shows': the comparisons each table is for, in words and ratios."""
    out = {"widths": [], "contrast": [], "spectrum": [], "noise": [], "fov": []}
    for syn, reals in _pairs_present(summary, labelled_only=True):
        real = reals[0]
        ps, pr = summary[syn]["width_pct"], summary[real]["width_pct"]
        ss, sr = summary[syn]["class_share"], summary[real]["class_share"]
        out["widths"].append(
            f"{syn} vs {real}: median {ps['p50']:.1f} vs {pr['p50']:.1f} px ({_x(ps['p50'], pr['p50'])}), p95 {ps['p95']:.1f} vs {pr['p95']:.1f} px ({_x(ps['p95'], pr['p95'])}); "
            f"share of vessel length thin {_pct(ss['thin'])} vs {_pct(sr['thin'])}, medium {_pct(ss['medium'])} vs {_pct(sr['medium'])}, wide {_pct(ss['wide'])} vs {_pct(sr['wide'])}.")
        for key, what in (("contrast", "mask pixels"), ("contrast_centreline", "centreline pixels")):
            cs, cr = summary[syn][key], summary[real][key]
            parts = [f"{c} {cs[c][0]:.3f} vs {cr[c][0]:.3f} ({_x(cs[c][0], cr[c][0])})" for c, _, _ in gap.WIDTH_CLASSES if np.isfinite(cs[c][0]) and np.isfinite(cr[c][0])]
            out["contrast"].append(f"{syn} vs {real}, {what}: " + ", ".join(parts) + ".")
        sd_s, sd_r = summary[syn]["contrast_all"][1], summary[real]["contrast_all"][1]
        out["contrast"].append(f"Spread over frames ({syn} vs {real}, all vessel pixels): sd {sd_s:.3f} vs {sd_r:.3f} ({_x(sd_s, sd_r)}).")
    for syn, reals in _pairs_present(summary):
        w = summary[syn]["spectrum_whole"]
        out["spectrum"].append(f"Whole crop, {syn}: beta {w['slope'][0]:.2f}, mid-band {w['mid'][0]:.0f}, floor {w['floor'][0]:.1f}; " + "; ".join(
            f"{r}: beta {summary[r]['spectrum_whole']['slope'][0]:.2f}, mid-band {summary[r]['spectrum_whole']['mid'][0]:.0f} ({_x(w['mid'][0], summary[r]['spectrum_whole']['mid'][0])} synthetic/real), "
            f"floor {summary[r]['spectrum_whole']['floor'][0]:.1f} ({_x(w['floor'][0], summary[r]['spectrum_whole']['floor'][0])})" for r in reals) + ".")
        labelled = [r for r in reals if summary[r]["labelled"]]
        if labelled and "spectrum_background" in summary[syn]:
            b = summary[syn]["spectrum_background"]
            out["spectrum"].append(f"Vessel-free background, {syn}: beta {b['slope'][0]:.2f}, mid-band {b['mid'][0]:.0f}, floor {b['floor'][0]:.1f}; " + "; ".join(
                f"{r}: beta {summary[r]['spectrum_background']['slope'][0]:.2f}, mid-band {summary[r]['spectrum_background']['mid'][0]:.0f} ({_x(b['mid'][0], summary[r]['spectrum_background']['mid'][0])}), "
                f"floor {summary[r]['spectrum_background']['floor'][0]:.1f} ({_x(b['floor'][0], summary[r]['spectrum_background']['floor'][0])})" for r in labelled) + ".")
        ns = summary[syn]["noise_field"][0]
        out["noise"].append(f"{syn}: {ns:.2f} grey levels; " + "; ".join(f"{r}: {summary[r]['noise_field'][0]:.2f} ({_x(ns, summary[r]['noise_field'][0])} synthetic/real)" for r in reals) + ".")
    for n, d in summary.items():
        out["fov"].append(f"{n}: {_pct(d['fov_circular'])} circular, {_pct(d['fov_other'])} other border; outside fraction {d['fov_outside'][0]:.3f} on average"
                          + (f", {d['fov_outside_when_any'][0]:.3f} in the frames with a border" if d["fov_any"] else "")
                          + f"; clipped-black pixels {100 * d['black'][0]:.2f}% of the frame.")
    return out


def findings(sets, summary, results) -> List[str]:
    """'What the engine gets wrong', each bullet chosen and worded by the measured numbers (so a
    rerun after an engine change rewrites it)."""
    out = []
    lab = list(_pairs_present(summary, labelled_only=True))
    # widths
    parts, too_few = [], False
    for syn, (real, *_) in lab:
        ss, sr = summary[syn]["class_share"], summary[real]["class_share"]
        ps, pr = summary[syn]["width_pct"], summary[real]["width_pct"]
        too_few |= ss["wide"] < 0.75 * sr["wide"]
        parts.append(f"{_pct(ss['wide'])} of the synthetic vessel length is wide (>= 8 px) vs {_pct(sr['wide'])} in {real}, p95 width {ps['p95']:.1f} vs {pr['p95']:.1f} px, "
                     f"median {ps['p50']:.1f} vs {pr['p50']:.1f} px")
    if parts:
        head = "**Too few wide vessels.**" if too_few else "**Vessel widths about right.**"
        out.append(f"{head} " + "; ".join(parts) + ". (XCAD's masks are drawn wider than the lumen, so part of its excess width is annotation; DCA1 traces the lumen.)")
        thin = [(syn, real, summary[syn]["class_share"]["thin"], summary[real]["class_share"]["thin"]) for syn, (real, *_) in lab]
        excess = [f"{syn}: {_pct(a)} of the length thin (< 3 px) vs {_pct(b)} in {real}" for syn, real, a, b in thin if a > 1.5 * b]
        if excess:
            out.append("**Too much thin-vessel length** (" + "; ".join(excess) + "): at that frame size the tree's small branches dominate the length.")
    # contrast
    parts, high, low, wide_ok = [], [], [], True
    for syn, (real, *_) in lab:
        ratios = {c: summary[syn]["contrast"][c][0] / summary[real]["contrast"][c][0] for c, _, _ in gap.WIDTH_CLASSES if summary[real]["contrast"][c][0] > 0}
        parts.append(f"vs {real}: " + ", ".join(f"{c} x{r:.2f}" for c, r in ratios.items()))
        high += [f"{c} vs {real}" for c, r in ratios.items() if r > 1.25]
        low += [f"{c} vs {real}" for c, r in ratios.items() if r < 0.8]
        wide_ok &= ratios.get("wide", 1.0) >= 0.9
    if parts:
        head = "**Contrast (synthetic / real mean, by width class)**: " + "; ".join(parts) + "."
        if high:
            head += " Too high: " + ", ".join(high) + "."
        if low:
            head += " Too low: " + ", ".join(low) + "."
        head += (" Wide synthetic vessels are *not* fainter than real ones on average, so the missed wide dark proximal segments point at their width and share (above) and at the spread (below), not at their mean contrast."
                 if wide_ok else " Wide synthetic vessels are fainter than real ones: the wide dark proximal segments are under-represented in contrast.")
        out.append(head)
    parts, spread = [], False
    for syn, (real, *_) in lab:
        cs = np.asarray([o.get("contrast", np.nan) for o in results[syn].overview])
        cr = np.asarray([o.get("contrast", np.nan) for o in results[real].overview])
        cs, cr = cs[np.isfinite(cs)], cr[np.isfinite(cr)]
        lo, hi = np.percentile(cr, [5, 95])
        sd_s, sd_r = cs.std(), cr.std()
        spread |= sd_s > 1.5 * sd_r
        parts.append(f"sd {sd_s:.3f} vs {sd_r:.3f} in {real}; {_pct(np.mean(cs < lo))} of the synthetic frames are fainter and {_pct(np.mean(cs > hi))} darker than {real}'s 5-95% range ({lo:.2f}-{hi:.2f})")
    if parts:
        out.append(("**Contrast varies far more between synthetic frames** (all vessel pixels: " if spread else "**Contrast spread over frames comparable** (") + "; ".join(parts) + ").")
    # noise
    parts, noisy = [], False
    for syn, reals in _pairs_present(summary):
        ns = summary[syn]["noise_field"][0]
        ratios = [ns / summary[r]["noise_field"][0] for r in reals]
        noisy |= min(ratios) > 1.25
        parts.append(f"{syn} {ns:.2f} vs " + ", ".join(f"{r} {summary[r]['noise_field'][0]:.2f}" for r in reals) + f" ({_span(ratios)})")
    if parts:
        text = ("**Too noisy** (Immerkaer sigma inside the field, grey levels): " if noisy else "**Noise level comparable** (Immerkaer sigma inside the field): ") + "; ".join(parts) + "."
        if "synthetic 300 px" in summary and "synthetic 512 px" in summary:
            a, b = summary["synthetic 300 px"]["noise_field"][0], summary["synthetic 512 px"]["noise_field"][0]
            real_512 = [summary[r]["noise_field"][0] for r in ("XCAD", "ARCADE train", "Kragujevac") if r in summary]
            if a > 1.5 * b:
                text += f" The engine's own 300-px frames measure x{a / b:.1f} the noise of its 512-px frames of the same scenes"
                dca1 = next((n for n in ("DCA1", "DCA1 train") if n in summary), None)
                text += (f", while the real 300-px set ({dca1}) measures lower than every real 512-px set." if dca1 and real_512 and summary[dca1]["noise_field"][0] < min(real_512) else ".")
        out.append(text)
    # spectrum
    parts, floor_high, flags = [], False, []
    for syn, reals in _pairs_present(summary, labelled_only=True):
        real = reals[0]
        b, br = summary[syn]["spectrum_background"], summary[real]["spectrum_background"]
        floor = b["floor"][0] / br["floor"][0]
        floor_high |= floor > 2
        d_slope = b["slope"][0] - br["slope"][0]
        mid = b["mid"][0] / br["mid"][0]
        parts.append(f"{syn} vs {real}: beta {b['slope'][0]:.2f} vs {br['slope'][0]:.2f}, mid-band power x{mid:.2f}, high-frequency floor x{floor:.1f}")
        hs, hr = b["high_slope"][0], br["high_slope"][0]
        if hs < hr - 0.5:
            flags.append(f"at {syn.split()[-2]} px the spectrum flattens above 0.2 cycles/px (slope {hs:.2f} vs {hr:.2f} in {real}): the synthetic noise is whiter, less smoothed than the real systems' output")
        if d_slope > 0.4:
            flags.append(f"at {syn.split()[-2]} px the background spectrum falls too steeply (beta {b['slope'][0]:.2f} vs {br['slope'][0]:.2f}): smooth anatomy, missing fine texture")
        elif d_slope < -0.4:
            flags.append(f"at {syn.split()[-2]} px the background spectrum is too flat (beta {b['slope'][0]:.2f} vs {br['slope'][0]:.2f})")
        if mid < 0.67:
            flags.append(f"at {syn.split()[-2]} px the background has too little texture power at 0.05-0.1 cycles/px (x{mid:.2f})")
    if parts:
        text = "**Background texture (vessel-free spectrum)**: " + "; ".join(parts) + "."
        if floor_high:
            text += " The high-frequency floor is too high (the excess noise above)."
        if flags:
            text += " Also " + "; ".join(flags) + "."
        out.append(text)
    whole = []
    for syn, reals in _pairs_present(summary):
        w = summary[syn]["spectrum_whole"]["mid"][0]
        whole.append(f"{syn} {_span([w / summary[r]['spectrum_whole']['mid'][0] for r in reals])}")
    if whole:
        out.append("**Whole-frame mid-band power** (vessels included, 0.05-0.1 cycles/px, synthetic / real): " + ", ".join(whole)
                   + "; compare with the vessel-free ratios above: where the whole frame exceeds the background, the excess comes from the vessels (more vessel area, higher and more variable contrast).")
    # field of view
    circ_real = [(n, d["fov_circular"]) for n, d in summary.items() if not n.startswith("synthetic") and d["fov_circular"] >= 0.2]
    circ_syn = max((d["fov_circular"] for n, d in summary.items() if n.startswith("synthetic")), default=0.0)
    if circ_real and circ_syn < 0.05:
        out.append("**No circular field of view**: " + ", ".join(f"{n} shows the image-intensifier disc in {_pct(f)} of its frames" for n, f in circ_real)
                   + f" (black corners, mean outside fraction {summary[circ_real[0][0]]['fov_outside_when_any'][0]:.3f} where present); the engine in {_pct(circ_syn)}.")
    syn_black = [(n, d["black_frames"], d["black"][0]) for n, d in summary.items() if n.startswith("synthetic")]
    real_black = [(n, d["black_frames"], d["black"][0]) for n, d in summary.items() if not n.startswith("synthetic")]
    if syn_black and real_black:
        worst = max(f for _, f, _ in real_black)
        if min(f for _, f, _ in syn_black) > 1.5 * worst:
            out.append("**Clipped black regions inside the picture**: " + ", ".join(f"{_pct(f)} of {n} frames" for n, f, _ in syn_black)
                       + " have >= 1% of their pixels at grey <= 2 vs " + ", ".join(f"{n} {_pct(f)}" for n, f, _ in real_black)
                       + " (where real frames go black it is an unexposed border). The engine's dark anatomy / collimator bands saturate to black and reach the frame border, "
                       "which the field-of-view detector then counts as 'other border' (synthetic: "
                       + ", ".join(f"{_pct(summary[n]['fov_other'])}" for n, _, _ in syn_black) + ").")
    return out


def markdown(sets, summary, results, command: str) -> str:
    t = tables(sets, summary)
    b = section_bullets(summary)
    lines = [
        "# Synthetic vs real angiograms: the measured gap",
        "",
        f"Written by `{command}` (apps/synth_gap.py; the statistics are functions of angiokit/data/synthetic/gap.py). "
        "Numbers are mean ± sd over frames unless a column says pooled; grey levels on the 8-bit scale (synthetic frames "
        "quantised with `to_uint(image, 8)`); widths in pixels at each set's own resolution. Every sentence below is generated "
        "from these numbers, so a rerun after an engine change rewrites it.",
        "",
        "Sets:",
        "",
        *[f"- **{s.name}**: {s.description}" for s in sets],
        "",
        "Synthetic frames carry their exact vessel mask (the contrast-filled lumen); the real masks are manual: DCA1's trace "
        "the lumen including thin branches, XCAD's are drawn wider than the dark lumen and skip many small branches, which "
        "lowers XCAD's mask-pixel contrast and raises its widths.",
        "",
        "## What the engine gets wrong",
        "",
        *[f"- {x}" for x in findings(sets, summary, results)],
        "",
        "## Overview (the earlier single table, recomputed on these sets)",
        "",
        "Grey-level percentiles, Immerkaer noise over the whole frame, contrast of all vessel pixels against a 5-px ring and "
        "vessel area fraction (`angiokit.data.synthetic.stats.image_statistics`, as `python -m apps.synth --stats` wrote it). "
        "The earlier table also had ARCADE *test* and the DICOM XA cines; ARCADE *train* stands for ARCADE here.",
        "",
        t["overview"],
        "",
        "## Vessel width",
        "",
        "Width = 2 x the Euclidean distance transform of the mask at its skeleton pixels (skimage `skeletonize`): one value per "
        "skeleton pixel, so shares are shares of vessel *length*. A bar w px wide measures w (even w) or w + 1 (odd w). "
        "Percentiles pool the skeleton pixels of all frames of a set; thin < 3 px, medium 3-8 px, wide >= 8 px.",
        "",
        "![vessel width histograms](synthetic_vs_real_widths.png)",
        "",
        t["widths"],
        "",
        *[f"- {x}" for x in b["widths"]],
        "",
        "## Contrast by width class",
        "",
        "Contrast = 1 - mean vessel grey / mean grey of the background ring within 5 px of those vessel pixels (ring: no vessel, "
        "inside the exposed field). Each vessel pixel takes the width class of its nearest skeleton pixel. The centreline columns "
        "use the skeleton pixels only (the darkest part of the lumen; insensitive to a generous mask).",
        "",
        "![contrast by vessel width](synthetic_vs_real_contrast.png)",
        "",
        t["contrast"],
        "",
        *[f"- {x}" for x in b["contrast"]],
        "",
        "## Background texture (power spectrum)",
        "",
        "Radially averaged power spectral density of the central half of the frame (Hann window; normalised so white noise of "
        "sd s reads s², unit grey level² · px²). Pixels outside the exposed field and - for the background columns - the vessel "
        "mask grown by 2 px are filled from their surroundings (normalised Gaussian convolution) first. beta: slope of log PSD "
        f"against log frequency over {gap.SLOPE_BAND[0]}-{gap.SLOPE_BAND[1]} cycles/px (PSD ~ f^-beta); mid-band: mean PSD over "
        f"0.05-0.1 cycles/px; noise floor: mean PSD over {gap.HIGH_BAND[0]}-{gap.HIGH_BAND[1]} cycles/px. Frequencies are per pixel, "
        "so compare each synthetic size with the real sets of its size.",
        "",
        "![power spectra](synthetic_vs_real_spectrum.png)",
        "",
        t["spectrum"],
        "",
        *[f"- {x}" for x in b["spectrum"]],
        "",
        "## Noise",
        "",
        "Immerkaer's estimate (`stats.noise_sigma`, grey levels): over the whole frame, and over the pixels inside the detected "
        "field (a black border has no noise and its edge is no noise either). It sees uncorrelated pixel noise; noise smoothed "
        "by the imaging chain (and fine structure) moves it, so compare sets, not absolute values.",
        "",
        t["noise"],
        "",
        *[f"- {x}" for x in b["noise"]],
        "",
        "## Field of view",
        "",
        "Regions of a heavily smoothed frame (Gaussian sigma 1% of the width) darker than 0.2 x its 99th percentile that touch "
        "the frame border and cover >= 0.5% of it are outside the exposed field. The field is circular when a circle fitted to "
        "its inner edge matches it (radial spread < 2%, radius <= 1.25 x the frame, outside-region IoU >= 0.85); 'other' covers "
        "rectangular borders, collimator shutters and dark anatomy that reaches the frame edge (a threshold does not tell them "
        "apart: see the synthetic and XCAD examples). Disc corners under 0.5% of the frame count as no border.",
        "",
        "![field of view examples](synthetic_vs_real_fov.png)",
        "",
        t["fov"],
        "",
        *[f"- {x}" for x in b["fov"]],
        "",
    ]
    return "\n".join(lines)


def main(out: str = "docs", n: int = 40, seed: int = 0, data: str = SHARED, limit: int = None, progress: bool = True, preset: str = "default",
         tuning_only: bool = False):
    """Measure every set; write OUT/synthetic_vs_real.md and its four figures.

    ``n``: synthetic frames per size (300 and 512 px). ``data``: the shared data folder
    (``$ANGIOKIT_SHARED_DATA`` or ../shared/data). ``limit``: at most this many frames per
    real set (quick checks only). ``preset``: the engine's parameters
    (``angiokit.data.synthetic.PRESETS``; "real_matched" measures the label-free recipe's).
    ``tuning_only``: compare with DCA1's training frames and the unlabelled sets only - what the
    label-free preset may be fitted to (no test frame of DCA1 or XCAD is read)."""
    from apps.experiment import write_text

    sets = frame_sets(data, int(n), int(seed), limit, preset, bool(tuning_only))
    results = {s.name: measure_set(s, progress) for s in sets}
    summary = summarise(sets, results)
    paths = [
        widths_figure(sets, results, os.path.join(out, f"{STEM}_widths.png")),
        contrast_figure(sets, results, summary, os.path.join(out, f"{STEM}_contrast.png")),
        spectrum_figure(sets, results, os.path.join(out, f"{STEM}_spectrum.png")),
        fov_figure(sets, results, os.path.join(out, f"{STEM}_fov.png")),
    ]
    command = f"python -m apps.synth_gap --out {out} --n {n}" + (f" --seed {seed}" if seed else "") + (f" --limit {limit}" if limit else "")
    command += (f" --preset {preset}" if preset != "default" else "") + (" --tuning_only" if tuning_only else "")
    paths.insert(0, write_text(os.path.join(out, f"{STEM}.md"), markdown(sets, summary, results, command)))
    for p in paths:
        print(f"wrote {p}")


if __name__ == "__main__":
    fire.Fire(main)
