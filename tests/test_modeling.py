"""Model folders: atomic saves under write failures, refusal of damaged folders, no unpickling of weights."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import WritesMarker

from emoclf.config import PreprocessConfig
from emoclf.errors import ModelLoadError
from emoclf.inference import Predictor
from emoclf.layout import META_FILE, WEIGHTS_FILE
from emoclf.modeling import BundleMeta, load_bundle, load_for_training, save_bundle
from emoclf.preprocess import Preprocessor

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]
TEXTS = ["i am so happy today", "why would you do that to me"]


def new_bundle(tiny_model: Path, folder: Path, seed: int = 0) -> Path:
    """A model folder as training writes it, without training (the classifier head is random)."""
    torch.manual_seed(seed)
    tokenizer, model = load_for_training(str(tiny_model), LABELS)
    meta = BundleMeta(
        labels=LABELS, preprocess=Preprocessor(PreprocessConfig()).to_dict(), max_length=32, base_model=str(tiny_model)
    )
    return save_bundle(folder, model, tokenizer, meta)


@pytest.fixture
def bundle(tmp_path, tiny_model) -> Path:
    return new_bundle(tiny_model, tmp_path / "model")


class FullDisk:
    """A tokenizer whose save writes part of a file, then fails as a full disk does."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def save_pretrained(self, folder) -> None:
        (Path(folder) / "tokenizer.json").write_text('{"version": "1.0", "trunc')
        raise OSError(errno.ENOSPC, "No space left on device")


def test_enospc_while_saving_keeps_the_previous_model(bundle, tiny_model):
    before = Predictor.load(bundle).predict_proba(TEXTS)
    torch.manual_seed(1)
    tokenizer, other = load_for_training(str(tiny_model), LABELS)
    with pytest.raises(OSError) as info:
        save_bundle(bundle, other, FullDisk(tokenizer), BundleMeta.read(bundle))
    assert info.value.errno == errno.ENOSPC
    assert (Predictor.load(bundle).predict_proba(TEXTS) == before).all()
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["model"]  # no temporary folder left behind


def test_kernel_refusing_writes_keeps_the_previous_model(bundle):
    """A real write failure: the kernel stops the saving process at a 64 KiB file size (EFBIG)."""
    before = Predictor.load(bundle).predict_proba(TEXTS)
    script = (
        "import resource, signal, sys\n"
        "from emoclf.modeling import load_bundle, save_bundle\n"
        "model, tokenizer, meta = load_bundle(sys.argv[1])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write() instead of killing the process\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "save_bundle(sys.argv[1], model, tokenizer, meta)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(bundle)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert (bundle / WEIGHTS_FILE).stat().st_size > 65536  # the limit really cut the weights short
    assert (Predictor.load(bundle).predict_proba(TEXTS) == before).all()
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["model"]


def test_replacing_a_model_replaces_it_whole(bundle, tiny_model):
    before = Predictor.load(bundle).predict_proba(TEXTS)
    new_bundle(tiny_model, bundle, seed=1)
    assert not (Predictor.load(bundle).predict_proba(TEXTS) == before).all()
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["model"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    (folder / META_FILE).write_text(json.dumps(meta))


def _grow_vocabulary(folder: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens([f"newword{i}" for i in range(5000)])
    tokenizer.save_pretrained(folder)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda f: (f / WEIGHTS_FILE).unlink(), r"weights missing \(model.safetensors\)"),
        (lambda f: _truncate(f / WEIGHTS_FILE), "truncated or damaged"),
        (lambda f: (f / "config.json").unlink(), "truncated or damaged"),
        (lambda f: _truncate(f / "tokenizer.json"), "truncated or damaged"),
        (lambda f: (f / META_FILE).unlink(), "not an emoclf model folder"),
        (lambda f: _edit_meta(f, labels=[]), "no labels saved"),
        (lambda f: _edit_meta(f, labels=None), r"emoclf\.json: labels missing \(format 3 always saves it\)"),
        (lambda f: _edit_meta(f, labels=LABELS[:5]), "the model has 6 outputs but 5 labels are saved"),
        (_grow_vocabulary, r"tokenizer has \d+ tokens but the embeddings only \d+"),
    ],
    ids=[
        "no-weights",
        "truncated-weights",
        "no-config",
        "truncated-tokenizer",
        "no-meta",
        "empty-labels",
        "no-labels",
        "label-count",
        "vocab-size",
    ],
)
def test_damaged_folder_is_refused_before_any_prediction(bundle, damage, message):
    damage(bundle)
    with pytest.raises(ModelLoadError, match=message):
        Predictor.load(bundle)


def test_interrupted_swap_points_at_the_previous_model(bundle):
    bundle.rename(bundle.with_name(".model.old"))  # as a crash between save_bundle's two renames leaves it
    with pytest.raises(ModelLoadError, match=r"a save was cut short: the previous model is in .*\.model\.old"):
        load_bundle(bundle)


def test_pickled_weights_are_never_unpickled(bundle, tmp_path):
    marker = tmp_path / "pwned"
    torch.save(WritesMarker(marker), bundle / "pytorch_model.bin")
    Predictor.load(bundle).predict(TEXTS)  # safetensors beside it: the pickle is ignored
    (bundle / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="weights missing"):
        Predictor.load(bundle)  # only the pickle: refused, not loaded
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(bundle / "pytorch_model.bin", weights_only=True)
    assert not marker.exists()
    torch.load(bundle / "pytorch_model.bin", weights_only=False)  # the planted file is live
    assert marker.exists()


def test_non_finite_weights_or_temperature_are_refused(bundle, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    nan_weights = shutil.copytree(bundle, tmp_path / "nan-weights")
    tensors = load_file(nan_weights / WEIGHTS_FILE)
    key = next(k for k in tensors if k.endswith("classifier.weight"))
    tensors[key][0, 0] = float("nan")
    save_file(tensors, nan_weights / WEIGHTS_FILE, metadata={"format": "pt"})
    with pytest.raises(
        ModelLoadError,
        match=rf"^{nan_weights}: 1 weight tensor\(s\) hold NaN or infinity \(first: "
        r"classifier\.weight\); the training that wrote them diverged: retrain "
        r"with a lower --learning-rate$",
    ):
        Predictor.load(nan_weights)
    for bad in (float("nan"), float("inf"), 0.0):
        folder = shutil.copytree(bundle, tmp_path / f"t-{bad}", dirs_exist_ok=True)
        meta = json.loads((folder / META_FILE).read_text())
        meta["temperature"] = bad
        (folder / META_FILE).write_text(json.dumps(meta))  # json writes NaN and Infinity, as a diverged run did
        with pytest.raises(ModelLoadError, match=rf"temperature {bad} or class bias None is not a finite number"):
            Predictor.load(folder)


def test_a_lost_setting_an_unknown_key_or_a_newer_format_is_refused_in_one_line(bundle):
    meta = BundleMeta.read(bundle)
    assert meta.format == 3 and json.loads((bundle / META_FILE).read_text())["format"] == 3
    for key in ("temperature", "class_bias", "hierarchy", "max_length", "task", "thresholds", "allow_no_label"):
        saved = (bundle / META_FILE).read_text()
        _edit_meta(bundle, **{key: None})
        with pytest.raises(
            ModelLoadError,
            match=rf"^{bundle}/emoclf\.json: {key} missing \(format 3 always saves it\); the file is damaged or "
            "was edited: restore it from the training run, or retrain$",
        ):
            Predictor.load(bundle)
        (bundle / META_FILE).write_text(saved)
    _edit_meta(bundle, calibration=1.5, preprocess={**meta.preprocess, "stem": True}, emoclf_version="0.1.0")
    with pytest.raises(
        ModelLoadError,
        match=r"emoclf\.json: unknown key\(s\) calibration, preprocess\.stem \(written by emoclf 0\.1\.0, format 3\); "
        "the file was edited or comes from another tool: restore it, or retrain$",
    ):
        Predictor.load(bundle)
    _edit_meta(bundle, format=4, emoclf_version="9.0.0", calibration=None)
    with pytest.raises(
        ModelLoadError,
        match=r"emoclf\.json: written by emoclf 9\.0\.0 in model format 4; this emoclf \(0\.1\.0\) reads formats "
        r"up to 3: upgrade emoclf \(pip install -U emoclf\) to load it$",
    ):
        Predictor.load(bundle)


def test_a_model_folder_of_the_first_format_loads_and_predicts_as_it_did(bundle):
    """emoclf.json as emoclf wrote it before this format: no format, class_bias, hierarchy or Unicode step."""
    nfd = ["un cafe\u0301 tre\u0300s nai\u0308ve"]
    old_preprocess = Preprocessor(PreprocessConfig(normalize_unicode=False))
    expected = Predictor.load(bundle)
    _edit_meta(bundle, format=2, task=None, thresholds=None, allow_no_label=None)
    before_multi_label = Predictor.load(bundle)  # format 2: no task, as every model before multi-label
    assert before_multi_label.task.name == "single-label" and before_multi_label.meta.thresholds is None
    assert (before_multi_label.predict_proba(nfd) == expected.predict_proba(nfd)).all()
    _edit_meta(bundle, format=None, class_bias=None, hierarchy=None, preprocess=old_preprocess.to_dict())
    _edit_meta(bundle, preprocess={k: v for k, v in old_preprocess.to_dict().items() if k != "normalize_unicode"})
    old = Predictor.load(bundle)
    assert old.meta.format == 1 and old.meta.class_bias is None and old.meta.hierarchy is None
    assert old.preprocessor.config == old_preprocess.config
    assert old.clean(nfd) == ["un cafe tre s nai ve"]  # as it was trained and evaluated
    assert (old.predict_proba(nfd) == expected.predict_proba(["un cafe tre s nai ve"])).all()
