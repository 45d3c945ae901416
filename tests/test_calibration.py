"""Temperature scaling and class bias: fitted on validation, measured honestly."""

from __future__ import annotations

import numpy as np
import pytest

from emoclf.calibration import (
    calibrated_probs,
    choose_temperature,
    expected_calibration_error,
    fit_class_bias,
    fit_temperature,
    plot_reliability,
)


def overconfident(n: int = 3000, seed: int = 0):
    """A toy 3-class model that is right 70% of the time but says ~99%: its logits are scaled up 5x."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    true_logits = rng.normal(0, 1, (n, 3))
    true_logits[np.arange(n), y] += 1.5
    return true_logits * 5.0, y


def test_temperature_reduces_ece_of_overconfident_model():
    val_logits, y_val = overconfident(seed=0)
    test_logits, y_test = overconfident(seed=1)
    t = fit_temperature(val_logits, y_val)
    assert 3.0 < t < 7.0  # the logits were inflated 5x
    before = expected_calibration_error(calibrated_probs(test_logits), y_test)
    after = expected_calibration_error(calibrated_probs(test_logits, t), y_test)
    assert before > 0.15 and after < 0.05 and after < before / 3
    # scaling never changes the predicted class
    assert (calibrated_probs(test_logits, t).argmax(1) == test_logits.argmax(1)).all()


def test_ece_is_zero_for_perfectly_calibrated_bins():
    probs = np.array([[1.0, 0.0]] * 10)
    assert expected_calibration_error(probs, np.zeros(10, dtype=int)) == 0.0
    assert expected_calibration_error(probs, np.ones(10, dtype=int)) == pytest.approx(1.0)


def test_class_bias_recovers_a_shifted_class():
    from sklearn.metrics import f1_score

    logits, y = overconfident(seed=2)
    logits = logits / 5.0
    logits[:, 2] -= 1.5  # the model under-predicts class 2
    bias = fit_class_bias(logits, y)
    assert bias[0] == 0.0 and bias[2] > 0.5
    before = f1_score(y, logits.argmax(1), average="macro")
    after = f1_score(y, calibrated_probs(logits, 1.0, bias).argmax(1), average="macro")
    assert after > before + 0.05


def test_reliability_plot_written(tmp_path):
    logits, y = overconfident(300)
    path = plot_reliability(calibrated_probs(logits), calibrated_probs(logits, 5.0), y, tmp_path / "r.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_temperature_fit_that_cannot_be_trusted_falls_back_to_1():
    # Few, perfectly separable validation texts: NLL keeps falling as T -> 0, so the fit ends at its bound,
    # and sharpening would make every later confidence ~1.0 (test ECE 0.014 -> 0.182 on the demo once).
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 1.0]] * 4)
    labels = np.array([0, 1, 2] * 4)
    choice = choose_temperature(logits, labels)
    assert choice.fitted < 0.1 and choice.temperature == 1.0
    assert choice.reason.startswith("the fit ran towards its bound (T = 0.05")
    assert choice.report()["temperature_kept"] is False
    # A real overconfident model keeps its fitted temperature.
    val_logits, y_val = overconfident(seed=0)
    kept = choose_temperature(val_logits, y_val)
    assert kept.reason is None and kept.temperature == kept.fitted and 3.0 < kept.temperature < 7.0
    assert kept.validation_ece_fitted < kept.validation_ece_before
