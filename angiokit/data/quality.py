"""A CAS-style benchmark for judging *synthetic* angiograms, built from the engine's cines.

For one moment of a synthetic cine:
  F  the contrast-free fluoroscopy frame (guidewire, catheter and anatomy, no iodine),
  C  the real contrast frame of the same moment,
  S  a "synthetic angiogram" made from C with the failures generative models show, at known
     severities: the guidewire faded, broken or erased; side branches dropped, broken, blurred
     or washed out; artifacts (hallucinated vessel fragments, ghost double contours, streaks,
     checkerboard texture, intensity blotches).

**These are proxy labels.** Each clinical metric gets a 1-5 score from a severity s in [0, 1]
by a monotone rule, q = 5 - 4 s (no failure = 5, the worst = 1), then R simulated raters each
report round(q + rater bias + noise) clipped to 1-5; the mean opinion score (MOS), its standard
deviation and the raters' histogram over the five levels are the labels. The severity is what a
rater can see in S, measured on noise-free displays of the rendering (``visible_severities``):
for the guidewire and the branches, the share of the wire's (the side branches') displayed
contrast that S lost or, for blur, moved out of place; a cut that falls outside the view, or a
fade that leaves the wire black where the display window clips it, costs nothing. The wire's
share is of at least a fifth of its contrast on the bare background (``WIRE_CONTRAST_FLOOR``):
where C itself barely shows the wire, losing it is a small loss, not a wire wholly lost. For artifacts
it is their strength, which scales every kind's amplitude. Real CAS-3K-style scores can be
imported from a CSV instead (``read_scores_csv``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np
from scipy.ndimage import gaussian_filter, shift

from .errors import AngioDataError, read_json
from .parallel import map_cases
from .synthetic import AngiogramScene, SynthConfig
from .synthetic.tube_raster import Tube, rasterize_tubes

METRICS = ("guidewire", "branch", "artifact")
METRIC_NAMES = {"guidewire": "guidewire visibility", "branch": "branch discernibility", "artifact": "artifact interference"}
LEVELS = ("bad", "poor", "fair", "good", "excellent")
GUIDEWIRE_MODES = ("fade", "break", "erase")
BRANCH_MODES = ("drop", "break", "blur", "wash")
ARTIFACT_MODES = ("fragments", "ghost", "streaks", "checkerboard", "blotches")
MAIN_BRANCHES = ("left_main", "lad", "lcx", "rca")
# the guidewire's label: its displayed contrast lost in S, as a share of what C displays of it but
# of at least this fraction of what the bare background (F) displays (``QualityScene._visible_damage``)
WIRE_CONTRAST_FLOOR = 0.2
# names the rule that turns renderings into labels; a cached benchmark of another rule is remade
LABEL_RULE = f"visible contrast, wire floor {WIRE_CONTRAST_FLOOR}"


@dataclass
class Failure:
    """Severities in [0, 1] (0 = none) and the kind of each failure."""

    guidewire: float = 0.0
    guidewire_mode: str = "fade"
    branch: float = 0.0
    branch_mode: str = "drop"
    artifact: float = 0.0
    artifact_modes: List[str] = field(default_factory=list)

    @classmethod
    def sample(cls, rng: np.random.Generator, clean_probability: float = 0.25) -> "Failure":
        def severity():
            return 0.0 if rng.random() < clean_probability else float(rng.uniform(0.05, 1.0))

        k = int(rng.integers(1, 3))
        return cls(
            guidewire=severity(), guidewire_mode=str(rng.choice(GUIDEWIRE_MODES)),
            branch=severity(), branch_mode=str(rng.choice(BRANCH_MODES)),
            artifact=severity(), artifact_modes=[str(m) for m in rng.choice(ARTIFACT_MODES, size=k, replace=False)],
        )


def score_from_severity(severity: float) -> float:
    """The monotone rule: 5 for no failure, 1 for the worst."""
    return 5.0 - 4.0 * float(np.clip(severity, 0.0, 1.0))


def rate(severities: Dict[str, float], rng: np.random.Generator, raters: int = 5, bias_sd: float = 0.3, noise_sd: float = 0.5, biases: Optional[np.ndarray] = None) -> Dict[str, dict]:
    """Simulated raters -> per metric: MOS, std, the raters' scores and their level histogram."""
    biases = rng.normal(0.0, bias_sd, raters) if biases is None else biases
    out = {}
    for metric in METRICS:
        q = score_from_severity(severities[metric])
        scores = np.clip(np.rint(q + biases + rng.normal(0.0, noise_sd, raters)), 1, 5).astype(int)
        hist = np.bincount(scores - 1, minlength=5) / raters
        out[metric] = {"mos": float(scores.mean()), "std": float(scores.std()), "scores": scores.tolist(), "distribution": hist.tolist()}
    return out


def _cut(tube: Tube, start: float, stop: float) -> Tube:
    """Zero the attenuation of the tube between fractions [start, stop) of its length."""
    n = len(tube.xy)
    w = tube.weight.copy()
    w[int(start * n) : max(int(stop * n), int(start * n) + 1)] = 0.0
    return Tube(tube.xy, tube.radius_px, w, tube.in_mask, tube.mask_group)


def _scaled(tube: Tube, factor: float) -> Tube:
    return Tube(tube.xy, tube.radius_px, tube.weight * factor, tube.in_mask, tube.mask_group)


def _visible_loss(without: np.ndarray, before: np.ndarray, after: np.ndarray, of: Optional[np.ndarray] = None, floor: float = 0.0) -> float:
    """The share of a structure's displayed contrast that is missing from where it was.

    Noise-free displayed frames (dark = attenuating): ``without`` the structure, ``before`` and
    ``after`` the failure. Its contrast is how much darker it makes a pixel than ``without``;
    the loss, summed where ``after`` is lighter than ``before``, is divided by the contrast of
    ``of`` (default: the structure before), or by ``floor`` (a summed contrast) where that is
    more. Display, not attenuation: a wire faded but still black where the window clips it has
    lost nothing a rater can see."""
    contrast_before = np.clip(without - before, 0, None)
    contrast_after = np.clip(without - after, 0, None)
    total = max(float(contrast_before.sum() if of is None else of.sum()), float(floor))
    return float(np.clip(contrast_before - contrast_after, 0, None).sum()) / total if total > 0 else 0.0


class QualityScene:
    """Renders F, C and a degraded S of one moment of an ``AngiogramScene``."""

    def __init__(self, cfg: SynthConfig, seed: int):
        self.scene = AngiogramScene(cfg, seed)
        self.rng = np.random.default_rng(seed + 1)
        self.cfg = cfg

    def _tubes(self, t_s: float, contrast: float):
        sc = self.scene
        vessels = sc._vessel_tubes(t_s, contrast)
        return vessels, sc._catheter_tubes(t_s, contrast), sc._guidewire_tube(t_s)

    def _line_integral(self, vessels, catheter, wire) -> np.ndarray:
        shape = (self.cfg.size, self.cfg.size)
        total, _ = rasterize_tubes(vessels + catheter + wire, shape, mask_groups=3)
        return total.numpy()

    def render_all(self, failure: Failure, t_s: Optional[float] = None) -> Dict[str, np.ndarray]:
        """{"fluoro": F, "contrast": C, "synthetic": S} as float images in [0, 1]; the damage
        the guidewire and branch failures visibly did is left in ``self.damage`` (the labels'
        severities, see ``visible_severities``)."""
        sc, rng = self.scene, self.rng
        t_s = sc.frame_time_s(0) if t_s is None else t_s
        vessels, catheter, wire = self._tubes(t_s, 1.0)
        contrast_integral = sc.background + self._line_integral(vessels, catheter, wire)
        images = {"fluoro": sc.render(t_s, contrast=0.0)[0], "contrast": sc.detector.expose(rng, contrast_integral)}
        names = [b.name for b in sc.tree.branches]
        side = [i for i, n in enumerate(names) if n not in MAIN_BRANCHES]
        wire_before, vessels_before = self._line_integral([], [], wire), self._line_integral(vessels, [], [])
        side_before = self._line_integral([v for i, v in enumerate(vessels) if i in side], [], [])
        bare_integral = sc.background + self._line_integral([], sc._catheter_tubes(t_s, 0.0), wire)  # F, noise-free

        # guidewire failures
        if failure.guidewire > 0 and wire:
            s, w = failure.guidewire, wire[0]
            if failure.guidewire_mode == "fade":
                wire = [_scaled(w, 1.0 - 0.95 * s)]
            elif failure.guidewire_mode == "break":
                for _ in range(int(rng.integers(1, 4))):
                    start = rng.uniform(0.2, 0.9)
                    w = _cut(w, start, start + 0.5 * s / 2)
                wire = [w]
            else:  # erase the distal part, the wire's business end
                wire = [_cut(w, 1.0 - 0.9 * s, 1.0)]
        # branch failures (side branches only: the main vessels stay)
        if failure.branch > 0 and side:
            s = failure.branch
            chosen = set(rng.choice(side, size=max(1, int(round(s * len(side)))), replace=False).tolist())
            mode = failure.branch_mode
            if mode == "drop":
                vessels = [v for i, v in enumerate(vessels) if i not in chosen]
            elif mode == "break":
                vessels = [_cut(v, rng.uniform(0.1, 0.5), rng.uniform(0.55, 0.95)) if i in chosen else v for i, v in enumerate(vessels)]
            elif mode == "wash":
                vessels = [_scaled(v, 1.0 - 0.9 * s) if i in chosen else v for i, v in enumerate(vessels)]
        integral = self._line_integral(vessels, catheter, wire)
        vessel_part = self._line_integral(vessels, [], [])
        if failure.branch > 0 and failure.branch_mode == "blur":
            blurred = gaussian_filter(vessel_part, 0.5 + 3.0 * failure.branch)
            integral, vessel_part = integral - vessel_part + blurred, blurred
        # artifacts in the attenuation domain
        a = failure.artifact
        if a > 0:
            integral = integral + self._artifacts(a, failure.artifact_modes, vessel_part)
        synthetic = sc.detector.expose(rng, sc.background + integral)
        if a > 0 and "checkerboard" in failure.artifact_modes:
            period = int(rng.integers(2, 5)) * max(1, self.cfg.size // 256)
            yy, xx = np.mgrid[0 : self.cfg.size, 0 : self.cfg.size]
            board = ((yy // period + xx // period) % 2) * 2.0 - 1.0
            synthetic = np.clip(synthetic + 0.06 * a * board, 0, 1).astype(np.float32)
        images["synthetic"] = synthetic
        self.damage = self._visible_damage(contrast_integral, wire_before, self._line_integral([], [], wire), vessels_before, vessel_part, side_before, bare_integral)
        return images

    def _visible_damage(self, contrast_integral, wire_before, wire_after, vessels_before, vessels_after, side_before, bare_integral) -> Dict[str, float]:
        """What S visibly lost, on noise-free displays of the scene (artifacts left out): the
        share of the wire's displayed contrast, and of the side branches' (the loss counted over
        all vessels: a blur blurs the main vessels too).

        The wire's share is of at least ``WIRE_CONTRAST_FLOOR`` of its contrast on the bare
        background (``bare_integral``, F's): where C barely shows the wire (inside iodine-filled
        vessels), losing those few pixels is a loss no rater can see, not a wire "wholly lost"."""
        def show(integral):
            return self.scene.detector.expose(None, integral)

        before = show(contrast_integral)
        no_wire, no_vessels = contrast_integral - wire_before, contrast_integral - vessels_before
        side_contrast = np.clip(show(contrast_integral - side_before) - before, 0, None)
        bare_wire_contrast = float(np.clip(show(bare_integral - wire_before) - show(bare_integral), 0, None).sum())
        return {
            "guidewire": _visible_loss(show(no_wire), before, show(no_wire + wire_after), floor=WIRE_CONTRAST_FLOOR * bare_wire_contrast),
            "branch": _visible_loss(show(no_vessels), before, show(no_vessels + vessels_after), of=side_contrast),
        }

    def _artifacts(self, a: float, modes: List[str], vessel_part: np.ndarray) -> np.ndarray:
        rng, n = self.rng, self.cfg.size
        extra = np.zeros((n, n), dtype=np.float32)
        if "fragments" in modes:  # hallucinated vessel pieces, unconnected to the tree
            tubes = []
            px_per_mm = self.scene.pose.scale_px_per_mm
            for _ in range(1 + int(round(6 * a))):
                start = rng.uniform(0.1, 0.9, 2) * n
                angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, 40))
                xy = start + np.cumsum(np.stack([np.cos(angle), np.sin(angle)], 1) * 0.5 * px_per_mm, 0)  # 0.5 mm steps
                r = np.full(len(xy), rng.uniform(0.5, 1.2) * px_per_mm)
                weight = self.scene.mu_iodine / px_per_mm * rng.uniform(0.6, 1.2)  # like a real branch
                tubes.append(Tube(xy, r, np.full(len(xy), weight), np.ones(len(xy), bool)))
            extra += rasterize_tubes(tubes, (n, n))[0].numpy()
        if "ghost" in modes:  # a shifted second copy of the vessels: double contours
            offset = rng.uniform(2, 6, 2) * rng.choice([-1, 1], 2) * n / 256
            extra += 0.6 * a * shift(vessel_part, offset, order=1, mode="constant")
        if "streaks" in modes:
            yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
            for _ in range(int(rng.integers(1, 4))):
                theta, c = rng.uniform(0, np.pi), rng.uniform(0.2, 0.8) * n
                d = xx * np.cos(theta) + yy * np.sin(theta) - c
                extra += rng.choice([-1, 1]) * 0.25 * a * np.exp(-(d**2) / (2 * (rng.uniform(0.5, 2.5) * n / 256) ** 2))
        if "blotches" in modes:
            from .synthetic.xray import smooth_field

            extra += 0.35 * a * np.clip(smooth_field(rng, (n, n), 6), 0, None)
        return extra


def quality_config(size: int = 256) -> SynthConfig:
    """Interventional frames: always a guidewire, clearly radiopaque (steel shaft, platinum tip)."""
    return SynthConfig(size=int(size), guidewire_probability=1.0, guidewire_attenuation_per_mm=(1.0, 1.6), guidewire_tip_factor=3.0)


def make_case(cfg: SynthConfig, seed: int, rater_biases: np.ndarray, failure: Optional[Failure] = None) -> dict:
    """One benchmark case: images F, C, S (float [0, 1]), the failure and the ratings."""
    q = QualityScene(cfg, seed)
    failure = failure or Failure.sample(q.rng)
    images = q.render_all(failure)
    severities = visible_severities(q.damage, failure)
    return {"images": images, "failure": asdict(failure), "severities": severities, "ratings": rate(severities, q.rng, len(rater_biases), biases=rater_biases)}


def visible_severities(damage: Dict[str, float], failure: Failure) -> Dict[str, float]:
    """The severities the labels are made from: what S visibly lost for the guidewire and the
    branches (the failure's parameter is not visible: e.g. a wire broken outside the view is
    intact in it, a faded wire still clipped black looks the same), the artifacts' strength."""
    return {"guidewire": min(damage["guidewire"], 1.0), "branch": min(damage["branch"], 1.0), "artifact": failure.artifact}


# ---- CSV of scored synthetic angiograms (ours and imported) ------------------------------------------

CSV_COLUMNS = ["case", "split", "synthetic", "aux_fluoro", "aux_reference"] + [f"{m}_{k}" for m in METRICS for k in ("mos", "std", "distribution")]
# the synthetic benchmark's scores.csv: those, each metric's severity, and the failure drawn
BENCHMARK_COLUMNS = CSV_COLUMNS[:5] + [f"{m}_{k}" for m in METRICS for k in ("mos", "std", "distribution", "severity")] + ["failure"]


def read_benchmark_labels(path: str, split: str = "test") -> List[dict]:
    """The ``split`` rows of a synthetic benchmark's scores.csv as {"case", "<metric>_mos",
    "<metric>_severity"} (floats): what its labels were made from, for ceilings and analyses
    (``read_scores_csv`` keeps only what training needs)."""
    if not os.path.isfile(path):
        raise AngioDataError(path, "scores CSV not found")
    wanted = [f"{m}_{k}" for m in METRICS for k in ("mos", "severity")]
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ["case", "split"] + wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise AngioDataError(path, f"no {missing} columns: expected the synthetic benchmark's scores.csv")
        return [{"case": r["case"], **{c: float(r[c]) for c in wanted}} for r in reader if r["split"] == split]


def read_scores_csv(path: str) -> List[dict]:
    """Read scored synthetic angiograms: columns ``synthetic`` (image path), optional
    ``aux_fluoro`` / ``aux_reference`` (paths, may be empty), ``guidewire``/``branch``/``artifact``
    scores (1-5; ``<metric>_mos`` also accepted), optional ``<metric>_std``,
    ``<metric>_distribution`` ("p1;p2;p3;p4;p5"), ``split`` and ``case``. Relative paths are
    relative to the CSV's folder. Errors name the file, the row and the problem."""
    if not os.path.isfile(path):
        raise AngioDataError(path, "scores CSV not found")
    root = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "synthetic" not in reader.fieldnames:
            raise AngioDataError(path, f"CSV needs a 'synthetic' column; it has {reader.fieldnames}")
        for i, row in enumerate(reader, start=2):
            item = {"case": row.get("case") or f"row{i}", "split": row.get("split") or "", "image": _resolve(root, row["synthetic"])}
            for aux in ("aux_fluoro", "aux_reference"):
                if row.get(aux):
                    item[aux] = _resolve(root, row[aux])
            for metric in METRICS:
                raw = row.get(f"{metric}_mos") or row.get(metric)
                try:
                    mos = float(raw)
                except (TypeError, ValueError):
                    raise AngioDataError(path, f"row {i}: {metric} score {raw!r} is not a number") from None
                if not 1.0 <= mos <= 5.0:
                    raise AngioDataError(path, f"row {i}: {metric} score {mos} is outside 1-5")
                dist = row.get(f"{metric}_distribution")
                item[f"{metric}_mos"] = mos
                item[f"{metric}_std"] = float(row.get(f"{metric}_std") or 0.0)
                item[f"{metric}_distribution"] = [float(v) for v in dist.split(";")] if dist else level_distribution(mos).tolist()
            rows.append(item)
    if not rows:
        raise AngioDataError(path, "no scored rows")
    return rows


def level_distribution(mos: float) -> np.ndarray:
    """A single score as a distribution over the five levels (linear between neighbours)."""
    p = np.zeros(5)
    lo = int(np.clip(np.floor(mos), 1, 5))
    frac = mos - lo
    p[lo - 1] = 1.0 - frac
    if frac > 0:
        p[lo] = frac
    return p


def read_rating(path: str) -> Dict[str, float]:
    """One rater's scores of one synthetic angiogram, a JSON object
    ``{"guidewire": 1-5, "branch": 1-5, "artifact": 1-5}`` (other keys, e.g. a comment, are kept
    out); errors name the file and the problem."""
    rating = read_json(path, "quality rating")
    if not isinstance(rating, dict):
        raise AngioDataError(path, f"a quality rating is a JSON object with {list(METRICS)}; got a {type(rating).__name__}")
    missing = [m for m in METRICS if m not in rating]
    if missing:
        raise AngioDataError(path, f"quality rating lacks {missing}; expected {list(METRICS)} scored 1-5")
    scores = {}
    for m in METRICS:
        try:
            scores[m] = float(rating[m])
        except (TypeError, ValueError):
            raise AngioDataError(path, f"quality rating {m}={rating[m]!r} is not a number") from None
        if not 1.0 <= scores[m] <= 5.0:
            raise AngioDataError(path, f"quality rating {m}={scores[m]} is outside 1-5")
    return scores


def rating_target(scores: Dict[str, float]) -> List[List[float]]:
    """A rating as the CAS-IQA training target: per metric the five level probabilities, then the
    score (one rater: the distribution is the score itself, see ``level_distribution``)."""
    return [level_distribution(scores[m]).tolist() + [float(scores[m])] for m in METRICS]


def _resolve(root: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(root, p)


def benchmark_settings(n: int, size: int, seed: int = 0, raters: int = 5, val_fraction: float = 0.15, test_fraction: float = 0.25) -> dict:
    """What makes a synthetic benchmark what it is, as its ``benchmark.json`` records it."""
    return {"cases": int(n), "size": int(size), "seed": int(seed), "raters": int(raters), "val_fraction": float(val_fraction), "test_fraction": float(test_fraction), "label_rule": LABEL_RULE}


def benchmark_mismatch(root: str, settings: dict) -> str:
    """Why the benchmark in ``root`` is not the one ``settings`` describe ('' when it is): one
    written before the settings were recorded, or with another label rule, counts as different."""
    path = os.path.join(root, "benchmark.json")
    if not os.path.isfile(path):
        return f"{path} is missing (a benchmark from before label rule {LABEL_RULE!r}, or not a synthetic one)"
    found = read_json(path, "benchmark settings")
    differ = [f"{k} {found.get(k)!r} (wanted {v!r})" for k, v in settings.items() if found.get(k) != v]
    return f"{path}: " + ", ".join(differ) if differ else ""


def _case_name(index: int) -> str:
    return f"q{index:05d}"


def _write_case(args) -> dict:
    """Render and write case ``index`` of a benchmark; its scores.csv row (split not set)."""
    import json

    from .synthetic.export import sample_seed
    from .writers import to_uint, write_png

    out, index, cfg, seed, biases = args
    case = _case_name(index)
    result = make_case(cfg, sample_seed(seed, index), biases)
    paths = {}
    for key, suffix in (("synthetic", ""), ("fluoro", "_aux_fluoro"), ("contrast", "_aux_reference")):
        paths[key] = os.path.join("images", f"{case}{suffix}.png")
        write_png(os.path.join(out, paths[key]), to_uint(result["images"][key], 8))
    row = {"case": case, "split": "", "synthetic": paths["synthetic"], "aux_fluoro": paths["fluoro"], "aux_reference": paths["contrast"]}
    for metric in METRICS:
        r = result["ratings"][metric]
        row[f"{metric}_mos"], row[f"{metric}_std"] = f"{r['mos']:.2f}", f"{r['std']:.3f}"
        row[f"{metric}_distribution"] = ";".join(f"{p:.2f}" for p in r["distribution"])
        row[f"{metric}_severity"] = f"{result['severities'][metric]:.3f}"
    row["failure"] = json.dumps(result["failure"])
    return row


def write_quality_benchmark(out: str, n: int = 300, size: int = 256, seed: int = 0, raters: int = 5, val_fraction: float = 0.15, test_fraction: float = 0.25, progress: bool = True, workers: int = 1) -> str:
    """Write ``n`` cases: images/<case>.png (S), images/<case>_aux_fluoro.png (F),
    images/<case>_aux_reference.png (C) - the naming rule MONAI Label's quality task uses -
    scores.csv (one row per case; columns of ``read_scores_csv`` plus the failures) and
    benchmark.json (``benchmark_settings``, written last: a cache is only reused once whole).
    Cases are seeded by their index, so ``workers`` processes write the same files as one."""
    import json

    from .datalist import assign_splits
    from .writers import atomic_path, write_csv

    cfg = quality_config(size)
    settings = benchmark_settings(n, size, seed, raters, val_fraction, test_fraction)
    kept = _reusable_rows(out, settings)
    biases = np.random.default_rng(seed).normal(0.0, 0.3, raters)  # the same rater panel for all cases
    cases = [_case_name(i) for i in range(n)]
    jobs = [(out, i, cfg, seed, biases) for i, case in enumerate(cases) if case not in kept]
    splits = assign_splits(cases, val_fraction, test_fraction, seed)
    written = {row["case"]: row for row in map_cases(_write_case, jobs, workers, desc="quality benchmark", progress=progress, chunksize=4)}
    rows = [kept.get(case) or written[case] for case in cases]
    for row in rows:
        row["split"] = splits[row["case"]]
    path = write_csv(os.path.join(out, "scores.csv"), rows)
    with atomic_path(os.path.join(out, "benchmark.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(settings, f, indent=2)
    return path


def _reusable_rows(out: str, settings: dict) -> Dict[str, dict]:
    """case -> scores.csv row of the cases a whole benchmark already in ``out`` holds, when it was
    made with ``settings`` but another number of cases (cases are seeded by their index, so case
    i is the same in both), and their three images are there; {} otherwise. Growing a benchmark
    renders only the new cases."""
    import csv

    scores = os.path.join(out, "scores.csv")
    if not os.path.isfile(scores):
        return {}
    if benchmark_mismatch(out, {k: v for k, v in settings.items() if k != "cases"}):
        return {}
    with open(scores, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != BENCHMARK_COLUMNS:  # written by another version of the writer
            return {}
        rows = {row["case"]: row for row in reader}
    return {case: row for case, row in rows.items() if all(os.path.isfile(os.path.join(out, row[k])) for k in ("synthetic", "aux_fluoro", "aux_reference"))}
