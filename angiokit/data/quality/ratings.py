"""One annotator's rating of one synthetic angiogram (the MONAI Label app's ``quality`` labels): the
rating file and the training target made from it."""

from __future__ import annotations

from typing import Dict, List

from ..errors import AngioDataError, read_json
from .scale import METRICS, level_distribution


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
