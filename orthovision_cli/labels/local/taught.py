"""What a person taught (`orthovision train`, `train --from-decisions`), combined with the default
pack's evidence instead of overriding it.

A taught head learnt from a handful of examples. Its probabilities are calibrated on its own
leave-one-out predictions (`calibrate`: a temperature, and a cap at the accuracy those answers
vouch for 9 times in 10, so four right answers out of four are worth 0.63, not certainty).
Then, per tag (`combine`):

- where the default evidence knows no value (or only proposes one for a question the pixels
  cannot settle: film or digital), the taught head's calibrated vote stands alone if it is sure
  enough to be written without review, and says nothing otherwise;
- where both name the same value, the two are combined as independent evidence (odds multiplied,
  the head's vote taken as "this value or not"): the confidence can only rise;
- where they differ and the head knows the default's value, a head sure enough to be written on
  its own lowers it the same way (the file goes to review); a weaker head only notes it, so a
  pack taught on two examples per value never sends a file to review that was not;
- where the head never learnt the default's value, it has nothing to say about it.

The share of each value among the taught examples (a practice's archive: all frontal faces at
rest, all chest films) is a prior that raises the confidence of a value most examples had
(`taught_prior`); a value the examples did not have is never lowered by it, so a pack taught on
one source leaves another source's sure labels as they were.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...defaults import DEFAULT_MIN_CONFIDENCE
from ..model import TAGS, Label, Labels, Tag
from . import rules
from .heads import temper

TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)
# Tags whose taught shares are a prior: the view and the body part of a practice's archive.
PRIOR_TAGS: tuple[Tag, ...] = ("protocol", "body_part")
MIN_PRIOR_EXAMPLES = 2
FLOOR_QUANTILE = 0.1
# A modality taught for a radiograph as a batch fact: scanned films or digital exports.
FILM_OR_DIGITAL = {"RG": "film", "DX": "digital", "CR": "digital"}
_EPS = 1e-6


def _odds(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return p / (1 - p)


def _prob(odds: float) -> float:
    return odds / (1 + odds)


def capped(probs: np.ndarray, cap: float) -> np.ndarray:
    """A probability vector whose largest entry is at most `cap` (the excess spread over the
    others in proportion, evenly where they are all zero)."""
    p = np.asarray(probs, np.float64).copy()
    k = int(np.argmax(p))
    if p[k] <= cap or len(p) < 2:
        return p
    excess = p[k] - cap
    p[k] = cap
    rest = [i for i in range(len(p)) if i != k]
    total = float(p[rest].sum())
    for i in rest:
        p[i] += excess * (p[i] / total if total > 0 else 1 / len(rest))
    return p


def accuracy_floor(correct: int, tested: int, k: int = 2) -> float:
    """The accuracy a head has at least, 9 times in 10, after `correct` of `tested` left-out
    answers (the 10 % quantile of Beta(correct + 1, wrong + 1)); never below chance (1/k).
    Four right of four: 0.63; sixteen of sixteen: 0.87; forty of forty: 0.95."""
    grid = np.linspace(0.0005, 0.9995, 2000)
    logpdf = correct * np.log(grid) + (tested - correct) * np.log1p(-grid)
    cdf = np.cumsum(np.exp(logpdf - logpdf.max()))
    cdf /= cdf[-1]
    floor = float(grid[int(np.searchsorted(cdf, FLOOR_QUANTILE))])
    return max(1.0 / max(2, k), floor)


def calibrate(oof: np.ndarray, truth: Sequence[int]) -> tuple[float, float]:
    """(temperature, max_confidence) from out-of-fold probabilities `oof` (n, k) and the true
    class indices: the temperature of least log-loss, and the accuracy the left-out answers
    vouch for (`accuracy_floor`): a few right answers are weak evidence."""
    n = len(truth)
    k = int(np.shape(oof)[1]) if np.ndim(oof) == 2 else 2
    if n == 0:
        return TEMPERATURES[-1], 1.0 / max(2, k)
    idx = np.asarray(truth)
    best_t, best_loss = TEMPERATURES[0], math.inf
    for t in TEMPERATURES:
        p = temper(oof, t)[np.arange(n), idx]
        loss = float(-np.log(np.clip(p, 1e-12, 1.0)).mean())
        if loss < best_loss - 1e-9:
            best_t, best_loss = t, loss
    correct = int((np.argmax(oof, axis=1) == idx).sum())
    return best_t, accuracy_floor(correct, n, k)


@dataclass(frozen=True)
class Vote:
    """A taught head's calibrated probabilities for one tag of one image."""

    tag: Tag
    probabilities: Mapping[str, float]
    source: str

    @property
    def value(self) -> str:
        return max(self.probabilities, key=lambda v: self.probabilities[v])

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.value])


def vote_of(
    tag: Tag, classes: Sequence[str], probs: np.ndarray, spec: Mapping[str, Any], source: str
) -> Vote:
    """A head's raw probabilities -> its calibrated vote (the spec's temperature and cap)."""
    p = temper(np.ravel(probs), float(spec.get("temperature", 1.0)))
    p = capped(p, float(spec.get("max_confidence", 1.0)))
    return Vote(tag, {c: float(q) for c, q in zip(classes, p, strict=True)}, source)


def _combined(default: float, vote_p: float) -> float:
    """Two independent pieces of evidence for one value: odds multiplied. The head's vote counts
    as "this value or not" against an even prior, whatever its number of classes: the share it
    gives values that do not fit this image (a chest view for a face) must not count as
    evidence for the value it agrees on."""
    return _prob(_odds(default) * _odds(vote_p))


def open_question(label: Label) -> bool:
    """A value the default pack proposes only as a placeholder: film or digital that the file
    does not state (DX proposed below review, `detail.acquisition` unknown, no batch fact)."""
    return label.detail.get("acquisition") == "unknown" and "radiographs" not in label.detail


def combine_vote(default: Label | None, vote: Vote) -> Label:
    """The default label and one taught vote -> the label (see the module docstring)."""
    probs = {v: round(q, 4) for v, q in vote.probabilities.items()}
    taught: dict[str, Any] = {"source": vote.source, "probabilities": probs}
    if default is None or not default.known or open_question(default):
        detail = {**(dict(default.detail) if default is not None else {}), "taught": taught}
        if vote.confidence < DEFAULT_MIN_CONFIDENCE:
            if default is not None and default.known:
                return default  # a question the pixels cannot settle stays open
            # Alone and not sure: silent, as the default was (it would only add a question).
            return Label(vote.tag, None, 0.0, vote.source, detail=detail)
        return Label(vote.tag, vote.value, round(vote.confidence, 4), vote.source, detail=detail)
    assert default.value is not None
    if default.value not in vote.probabilities:
        return default  # the head never learnt this value: no opinion on it
    both = _combined(default.confidence, vote.probabilities[default.value])
    if default.value == vote.value:
        conf = max(default.confidence, both)  # agreement never lowers
        taught["agrees"] = True
    else:
        taught["agrees"] = False
        taught["says"] = vote.value
        # Only a head sure enough to be written on its own may contradict the default evidence
        # (the file then goes to review); a weaker one has not earned it and is noted only.
        conf = (
            min(default.confidence, both) if vote.confidence >= DEFAULT_MIN_CONFIDENCE else default.confidence
        )
    conf = default.confidence if conf == default.confidence else round(conf, 4)
    return replace(default, confidence=conf, detail={**default.detail, "taught": taught})


def taught_prior(default: Label | None, counts: Mapping[str, int]) -> Label | None:
    """Raise a known value's confidence by its share among the taught examples of this kind of
    image (posterior mean share with a uniform prior, against an even default); never lower it."""
    if default is None or not default.known or default.value is None:
        return default
    n = sum(counts.values())
    if n < MIN_PRIOR_EXAMPLES:
        return default
    share = (counts.get(default.value, 0) + 1) / (n + 2)
    if share <= 0.5:
        return default
    conf = _prob(_odds(default.confidence) * _odds(share))
    if conf <= default.confidence:
        return default
    prior = {"share": round(share, 4), "of": n, "before": round(default.confidence, 4)}
    return replace(default, confidence=round(conf, 4), detail={**default.detail, "taught_prior": prior})


def combine(
    default: Labels,
    votes: Sequence[Vote],
    priors: Mapping[str, Mapping[str, int]] | None = None,
) -> Labels:
    """The default pack's labels with the taught votes and the taught shares of values."""
    out = default
    for vote in votes:
        out = out.with_label(combine_vote(out.get(vote.tag), vote))
    for tag in TAGS:
        if priors and tag in PRIOR_TAGS and tag in priors:
            lab = taught_prior(out.get(tag), priors[tag])
            if lab is not None:
                out = out.with_label(lab)
    return out


def taught_shares(
    data: Mapping[Tag, Sequence[tuple[Path, str]]],
    kind_of: Callable[[Path], str],
    radiographs: str | None = None,
) -> dict[str, Any]:
    """What the examples say besides heads: the count of each value per kind of image
    (photograph, radiograph) and tag (`priors`), and the batch fact of film or digital when
    every radiograph taught with RG, DX or CR agrees (`facts.radiographs`: RG film, DX and CR
    digital) or, first, as the person answered it for the batch (`radiographs`). `kind_of`
    tells an example's kind (the colour rule)."""
    priors: dict[str, dict[str, Counter[str]]] = {}
    acquisitions: Counter[str] = Counter()
    modalities: Counter[str] = Counter()
    for tag, items in data.items():
        for path, value in items:
            kind = kind_of(path)
            if kind not in (rules.PHOTOGRAPH, rules.RADIOGRAPH):
                continue
            priors.setdefault(kind, {}).setdefault(tag, Counter())[value] += 1
            if tag == "modality" and kind == rules.RADIOGRAPH and value in FILM_OR_DIGITAL:
                acquisitions[FILM_OR_DIGITAL[value]] += 1
                modalities[value] += 1
    out: dict[str, Any] = {}
    if priors:
        out["priors"] = {
            kind: {tag: dict(sorted(c.items())) for tag, c in tags.items()} for kind, tags in priors.items()
        }
    if radiographs is not None:  # the person's own answer to the question wins
        out["facts"] = {"radiographs": radiographs}
    elif len(acquisitions) == 1 and sum(acquisitions.values()) >= MIN_PRIOR_EXAMPLES:
        out["facts"] = {"radiographs": next(iter(acquisitions))}
        if len(modalities) == 1:  # all CR (or all DX): written as they said, not as the kind's DX
            out["facts"]["modality"] = next(iter(modalities))
    return out
