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

The modules, one concern each:

    scale.py        METRICS, METRIC_NAMES, LEVELS, level_distribution: what is rated, on what scale
    failures.py     Failure and its kinds: what S is given, at which severities
    scene.py        QualityScene, quality_config: rendering F, C and S, and what S visibly lost
    labels.py       WIRE_CONTRAST_FLOOR, LABEL_RULE, visible_severities, score_from_severity,
                    rate: the label rule and the simulated raters
    scores_csv.py   read_scores_csv, read_benchmark_labels, the columns: the CSV of scores
    ratings.py      read_rating, rating_target: one annotator's rating (the MONAI Label app)
    benchmark.py    write_quality_benchmark, benchmark_settings, benchmark_mismatch, make_case:
                    the benchmark's files and the settings that made them

The package exports all of them, so ``angiokit.data.quality.<name>`` is where code imports from.
"""

from .benchmark import benchmark_mismatch, benchmark_settings, make_case, write_quality_benchmark
from .failures import ARTIFACT_MODES, BRANCH_MODES, GUIDEWIRE_MODES, Failure
from .labels import LABEL_RULE, WIRE_CONTRAST_FLOOR, rate, score_from_severity, visible_severities
from .ratings import rating_target, read_rating
from .scale import LEVELS, METRIC_NAMES, METRICS, level_distribution
from .scene import MAIN_BRANCHES, QualityScene, _visible_loss, quality_config  # _visible_loss: tests import it from here
from .scores_csv import BENCHMARK_COLUMNS, CSV_COLUMNS, read_benchmark_labels, read_scores_csv

__all__ = [
    "ARTIFACT_MODES",
    "BENCHMARK_COLUMNS",
    "BRANCH_MODES",
    "CSV_COLUMNS",
    "Failure",
    "GUIDEWIRE_MODES",
    "LABEL_RULE",
    "LEVELS",
    "MAIN_BRANCHES",
    "METRICS",
    "METRIC_NAMES",
    "QualityScene",
    "WIRE_CONTRAST_FLOOR",
    "benchmark_mismatch",
    "benchmark_settings",
    "level_distribution",
    "make_case",
    "quality_config",
    "rate",
    "rating_target",
    "read_benchmark_labels",
    "read_rating",
    "read_scores_csv",
    "score_from_severity",
    "visible_severities",
    "write_quality_benchmark",
]
