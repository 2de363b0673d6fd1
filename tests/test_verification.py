"""EER, minDCF, cosine scores and trial lists (automel.verification), against hand-computed values and
scikit-learn's ROC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automel.errors import DataError
from automel.verification import (
    cosine_scores,
    equal_error_rate,
    error_rates,
    min_dcf,
    read_trials,
    write_scores,
)


def test_perfectly_separated_scores_give_zero() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.0])
    labels = np.array([1, 1, 1, 0, 0, 0])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == 0.0 and threshold == 0.7  # the lowest target score still accepts no non-target
    dcf, dcf_threshold = min_dcf(scores, labels)
    assert dcf == 0.0 and dcf_threshold == 0.7


def test_reversed_scores_give_one() -> None:
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    labels = np.array([1, 1, 0, 0])
    assert equal_error_rate(scores, labels)[0] == 1.0
    # the cheapest point accepts nothing: every target missed costs p_target / p_target = 1
    assert min_dcf(scores, labels) == (1.0, np.inf)


def test_small_known_example() -> None:
    # descending: 0.9 T, 0.7 N, 0.6 T, 0.4 T, 0.3 N, 0.2 N. Operating points (p_fa, p_miss):
    # (0, 1), (0, 2/3), (1/3, 2/3), (1/3, 1/3), (1/3, 0), (2/3, 0), (1, 0): they meet at 1/3 after 0.6.
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.3, 0.2])
    labels = np.array([1, 1, 1, 0, 0, 0])
    thresholds, p_miss, p_fa = error_rates(scores, labels)
    assert thresholds.tolist() == [np.inf, 0.9, 0.7, 0.6, 0.4, 0.3, 0.2]
    np.testing.assert_allclose(p_miss, [1, 2 / 3, 2 / 3, 1 / 3, 0, 0, 0])
    np.testing.assert_allclose(p_fa, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(1 / 3) and threshold == 0.6
    # DCF = (0.01 p_miss + 0.99 p_fa) / 0.01: at 0.9 it is 2/3; any false alarm costs 33
    dcf, dcf_threshold = min_dcf(scores, labels)
    assert dcf == pytest.approx(2 / 3) and dcf_threshold == 0.9
    # with p_target 0.5 a false alarm costs as much as a miss: DCF = p_miss + p_fa, least (1/3) at 0.4
    assert min_dcf(scores, labels, p_target=0.5) == (pytest.approx(1 / 3), 0.4)


def test_interpolated_eer_and_ties() -> None:
    # one target and one non-target with the same score: the ROC jumps from (0, 1) to (1, 0), EER 0.5
    assert equal_error_rate(np.array([0.5, 0.5]), np.array([1, 0]))[0] == pytest.approx(0.5)
    # 0.8 T, 0.7 N, 0.6 T, then N N N: points (0,1) (0,.5) (.25,.5) (.25,0): the vertical step crosses at .25
    scores = np.array([0.8, 0.6, 0.7, 0.5, 0.4, 0.3])
    labels = np.array([1, 1, 0, 0, 0, 0])
    assert equal_error_rate(scores, labels)[0] == pytest.approx(0.25)
    # a tie between a target and a non-target is accepted or rejected whole (a diagonal ROC segment)
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    assert equal_error_rate(scores, labels)[0] == pytest.approx(0.25)


def _sklearn_eer_and_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float) -> tuple[float, float]:
    """EER and minDCF read off scikit-learn's ROC, written independently of automel's sweep."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    eer = None
    for i in range(1, len(fpr)):
        if fnr[i] <= fpr[i]:  # the ROC crossed fnr = fpr on the segment from point i-1 to point i
            d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
            eer = fpr[i - 1] + d0 / (d0 - d1) * (fpr[i] - fpr[i - 1])
            break
    assert eer is not None
    dcf = np.min(p_target * fnr + (1 - p_target) * fpr) / min(p_target, 1 - p_target)
    # sklearn's first point is (0, 0) at +inf: "accept nothing", the same as automel's point 0
    return float(eer), float(dcf)


@pytest.mark.parametrize("seed", range(8))
def test_matches_scikit_learn_roc_on_random_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_target, n_non = rng.integers(5, 200), rng.integers(5, 2000)
    labels = np.r_[np.ones(n_target, int), np.zeros(n_non, int)]
    scores = np.r_[rng.normal(1.0, 1.0, n_target), rng.normal(0.0, 1.0, n_non)]
    if seed % 2:  # coarse scores: many ties between targets and non-targets
        scores = np.round(scores, 1)
    perm = rng.permutation(labels.size)
    scores, labels = scores[perm], labels[perm]
    want_eer, want_dcf = _sklearn_eer_and_dcf(scores, labels, 0.01)
    assert equal_error_rate(scores, labels)[0] == pytest.approx(want_eer, abs=1e-12)
    assert min_dcf(scores, labels)[0] == pytest.approx(want_dcf, abs=1e-12)
    assert min_dcf(scores, labels, p_target=0.05)[0] == pytest.approx(
        _sklearn_eer_and_dcf(scores, labels, 0.05)[1], abs=1e-12)


@pytest.mark.parametrize(("scores", "labels", "match"), [
    ([0.1, 0.2], [1, 1], "both target and non-target"),
    ([0.1, 0.2], [0, 0], "both target and non-target"),
    ([0.1, 0.2], [1, 2], "0 .non-target. or 1"),
    ([0.1, np.nan], [1, 0], "finite"),
    ([0.1], [1, 0], "1 scores but 2 labels"),
])
def test_metrics_refuse_unusable_input(scores: list[float], labels: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        equal_error_rate(np.array(scores), np.array(labels))


def test_cosine_scores() -> None:
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-3.0, -4.0], [1.0, -1.0]])
    np.testing.assert_allclose(cosine_scores(a, b), [1.0, -1.0, 0.0], atol=1e-12)


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_read_labelled_trials_resolves_paths_against_the_list(tmp_path: Path) -> None:
    _touch(tmp_path / "lists" / "a" / "1.wav", tmp_path / "lists" / "b.pt", tmp_path / "elsewhere.flac")
    absolute = tmp_path / "elsewhere.flac"
    trials_file = tmp_path / "lists" / "trials.txt"
    trials_file.write_text(f"# VoxCeleb style\n1 a/1.wav b.pt\n\n0\tb.pt   {absolute}\n")
    trials = read_trials(trials_file)
    assert trials.labelled and trials.labels.tolist() == [1, 0]
    first, second = trials.trials
    lists = tmp_path / "lists"
    assert (first.enroll, first.test, first.line) == (lists / "a" / "1.wav", lists / "b.pt", 2)
    assert (second.enroll, second.test, second.line) == (lists / "b.pt", absolute, 4)
    assert second.fields == ("0", "b.pt", str(absolute))


def test_read_unlabelled_trials_and_write_scores(tmp_path: Path) -> None:
    _touch(tmp_path / "x.wav", tmp_path / "y.wav")
    trials_file = tmp_path / "trials.txt"
    trials_file.write_text("x.wav y.wav\ny.wav x.wav\n")
    trials = read_trials(trials_file)
    assert not trials.labelled and [t.label for t in trials.trials] == [None, None]
    with pytest.raises(DataError, match="no labels"):
        _ = trials.labels
    out = write_scores(tmp_path / "out" / "scores.txt", trials, [0.5, -0.25])
    assert out.read_text() == "x.wav y.wav 0.500000\ny.wav x.wav -0.250000\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.txt"]  # no temporary file left


@pytest.mark.parametrize(("text", "match"), [
    ("1 x.wav missing.wav\n", "missing.wav: not found .*trials.txt: line 1"),
    ("1 x.wav\n", "line 1: starts with the label 1 but names only one file"),
    ("x.wav\n", "line 1: expected 'label path1 path2'"),
    ("1 x.wav x.wav extra\n", "line 1: expected"),
    ("yes x.wav x.wav\n", "line 1: label 'yes' must be 1"),
    ("1 x.wav x.wav\nx.wav x.wav\n", "line 2: has 2 fields but the lines before have 3"),
    ("# nothing\n\n", "no trials"),
])
def test_bad_trial_lists_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    _touch(tmp_path / "x.wav")
    trials_file = tmp_path / "trials.txt"
    trials_file.write_text(text)
    with pytest.raises(DataError, match=match):
        read_trials(trials_file)


def test_missing_trial_list(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="trial list not found"):
        read_trials(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a folder"):
        read_trials(tmp_path)
