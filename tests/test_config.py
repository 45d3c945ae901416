"""Config: defaults, YAML round-trip, and the exact ConfigError messages for bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from emoclf.config import (
    FIELD_SECTION,
    SECTIONS,
    Config,
    DataConfig,
    ModelConfig,
    PreprocessConfig,
    TrainConfig,
    field_type,
)
from emoclf.errors import ConfigError, EmoclfError


def _raises(raw: dict, message: str):
    """Config.from_dict(raw) must raise ConfigError whose message is exactly ``message``."""
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        Config.from_dict(raw)


def test_defaults_validate_and_have_documented_values():
    cfg = Config()
    cfg.validate()  # no exception
    assert cfg.data.data is None
    assert cfg.data.text_column == "text" and cfg.data.label_column == "label"
    assert cfg.data.val_size == 0.1 and cfg.data.test_size == 0.1 and cfg.data.split_seed == 42
    assert cfg.preprocess == PreprocessConfig(True, "token", "token", True, True)
    assert cfg.model.model == "minilm" and cfg.model.max_length is None
    assert cfg.train.epochs == 3.0 and cfg.train.imbalance == "auto" and cfg.train.precision == "auto"
    assert cfg.tracking.tracking is True and cfg.tracking.experiment == "emoclf"


def test_config_error_is_value_error_and_emoclf_error():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, EmoclfError)


def test_field_names_unique_across_sections():
    names = [name for cls in SECTIONS.values() for name in cls.__dataclass_fields__]
    assert len(names) == len(set(names)) == len(FIELD_SECTION)
    assert FIELD_SECTION["epochs"] == "train" and FIELD_SECTION["text_column"] == "data"


def test_field_type_unwraps_optional():
    assert field_type(ModelConfig, "max_length") is int
    assert field_type(DataConfig, "data") is str
    assert field_type(TrainConfig, "epochs") is float


def test_yaml_round_trip_defaults(tmp_path):
    cfg = Config()
    path = cfg.save_yaml(tmp_path / "nested" / "cfg.yaml")
    assert path == tmp_path / "nested" / "cfg.yaml" and path.is_file()
    assert Config.from_yaml(path) == cfg


def test_yaml_round_trip_non_defaults(tmp_path):
    cfg = Config().replace(
        data="some/folder",
        max_samples=100,
        strict=True,
        urls="remove",
        users="keep",
        strip_non_word=True,
        max_length=64,
        epochs=0.5,
        learning_rate=3e-5,
        imbalance="focal",
        focal_gamma=1.5,
        tracking=False,
        run_name="r1",
        num_threads=2,
    )
    path = cfg.save_yaml(tmp_path / "cfg.yaml")
    back = Config.from_yaml(path)
    assert back == cfg
    assert back.train.learning_rate == 3e-5 and back.model.max_length == 64 and back.data.max_samples == 100
    # The file is a plain mapping of sections (readable and hand-editable).
    assert list(yaml.safe_load(path.read_text())) == ["data", "preprocess", "model", "train", "tracking"]


def test_partial_yaml_fills_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  epochs: 1\n  batch_size: 8\n", encoding="utf-8")
    cfg = Config.from_yaml(path)
    assert cfg.train.epochs == 1.0 and isinstance(cfg.train.epochs, float)
    assert cfg.train.batch_size == 8
    assert cfg.data == DataConfig() and cfg.model == ModelConfig()


def test_empty_yaml_is_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert Config.from_yaml(path) == Config()


def test_replace_epochs():
    cfg = Config()
    new = cfg.replace(epochs=1)
    assert new.train.epochs == 1.0 and isinstance(new.train.epochs, float)
    assert cfg.train.epochs == 3.0  # the original is untouched
    assert new.data == cfg.data and new.model == cfg.model


def test_replace_validates():
    with pytest.raises(ConfigError, match=re.escape("patience must be at least 1, got 0")):
        Config().replace(patience=0)


def test_int_to_float_coercion():
    cfg = Config.from_dict({"train": {"epochs": 2, "learning_rate": 1, "weight_decay": 0, "imbalance_threshold": 5}})
    for name, want in (("epochs", 2.0), ("learning_rate", 1.0), ("weight_decay", 0.0), ("imbalance_threshold", 5.0)):
        value = getattr(cfg.train, name)
        assert value == want and type(value) is float


def test_float_is_not_coerced_to_int():
    _raises({"train": {"batch_size": 8.0}}, "train.batch_size must be int, got 8.0")


def test_unknown_section():
    _raises({"trainer": {}}, "unknown config section(s): trainer; expected data, preprocess, model, train, tracking")
    _raises({"zz": 1, "aa": 2}, "unknown config section(s): aa, zz; expected data, preprocess, model, train, tracking")


def test_unknown_field():
    known = ", ".join(sorted(ModelConfig.__dataclass_fields__))
    _raises({"model": {"modle": "x"}}, f"unknown model setting(s): modle; known: {known}")


def test_field_in_wrong_section_is_unknown():
    known = ", ".join(sorted(DataConfig.__dataclass_fields__))
    _raises({"data": {"epochs": 1}}, f"unknown data setting(s): epochs; known: {known}")


def test_section_not_a_mapping():
    _raises({"data": [1, 2]}, "section data must be a mapping, got [1, 2]")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"epochs": "3"}}, "train.epochs must be float, got '3'"),
        ({"train": {"batch_size": "32"}}, "train.batch_size must be int, got '32'"),
        ({"data": {"strict": "yes"}}, "data.strict must be bool, got 'yes'"),
        ({"data": {"strict": 1}}, "data.strict must be bool, got 1"),
        ({"data": {"text_column": 5}}, "data.text_column must be str, got 5"),
        ({"model": {"max_length": "128"}}, "model.max_length must be int, got '128'"),
        ({"train": {"epochs": True}}, "train.epochs must be float, got True"),
    ],
)
def test_wrong_type(raw, message):
    _raises(raw, message)


def test_bool_for_int_field_is_refused():
    _raises({"train": {"batch_size": True}}, "train.batch_size must be int, got True")


def test_null_for_required_field_is_refused():
    _raises({"train": {"epochs": None}}, "train.epochs must be float, got None")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": {"val_size": 0}}, "val_size must be between 0 and 1 (exclusive), got 0.0"),
        ({"data": {"val_size": 1.0}}, "val_size must be between 0 and 1 (exclusive), got 1.0"),
        ({"data": {"test_size": -0.1}}, "test_size must be between 0 and 1 (exclusive), got -0.1"),
        ({"data": {"val_size": 0.5, "test_size": 0.5}}, "val_size + test_size must be below 1, got 0.5 + 0.5"),
        ({"train": {"epochs": 0}}, "epochs must be positive, got 0.0"),
        ({"train": {"batch_size": -1}}, "batch_size must be positive, got -1"),
        ({"train": {"eval_batch_size": 0}}, "eval_batch_size must be positive, got 0"),
        ({"train": {"learning_rate": -0.001}}, "learning_rate must be positive, got -0.001"),
        ({"train": {"patience": 0}}, "patience must be at least 1, got 0"),
        ({"model": {"max_length": 4}}, "max_length must be at least 8, got 4"),
        ({"train": {"precision": "fp8"}}, "precision must be one of auto, fp32, bf16, fp16; got 'fp8'"),
        (
            {"train": {"imbalance": "smote"}},
            "imbalance must be one of auto, none, oversample, undersample, class-weight, focal, logit-adjust, asl; "
            "got 'smote'",
        ),
        ({"preprocess": {"urls": "drop"}}, "urls must be one of keep, remove, token; got 'drop'"),
        ({"preprocess": {"users": "Token"}}, "users must be one of keep, remove, token; got 'Token'"),
    ],
)
def test_out_of_range(raw, message):
    _raises(raw, message)


def test_boundary_values_accepted():
    cfg = Config.from_dict(
        {"data": {"val_size": 0.49, "test_size": 0.5}, "model": {"max_length": 8}, "train": {"patience": 1}}
    )
    assert cfg.model.max_length == 8 and cfg.train.patience == 1


def test_direct_construction_validates():
    with pytest.raises(ConfigError, match=re.escape("test_size must be between 0 and 1 (exclusive), got 2")):
        Config(data=DataConfig(test_size=2))


def test_from_yaml_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="^" + re.escape(f"config file not found: {path}") + "$"):
        Config.from_yaml(path)


def test_from_yaml_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: not valid YAML: ")):
        Config.from_yaml(path)


def test_from_yaml_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: expected a mapping of sections, got list") + "$"):
        Config.from_yaml(path)


def test_from_yaml_unknown_field_message(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("train:\n  epocs: 2\n", encoding="utf-8")
    known = ", ".join(sorted(TrainConfig.__dataclass_fields__))
    with pytest.raises(ConfigError, match="^" + re.escape(f"unknown train setting(s): epocs; known: {known}") + "$"):
        Config.from_yaml(path)


@pytest.mark.parametrize("value", [0, -3])
def test_max_samples_below_one_is_refused(value):
    with pytest.raises(ConfigError, match="max_samples"):
        Config.from_dict({"data": {"max_samples": value}})


def test_the_shipped_default_yaml_is_the_default_config():
    """configs/default.yaml is what docs/getting-started.md points users to: it must say what the code does."""
    path = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    assert Config.from_yaml(path) == Config()
    assert yaml.safe_load(path.read_text()) == Config().to_dict()  # every field spelled out, none missing


def test_label_smoothing_and_max_val_samples_are_checked():
    with pytest.raises(ConfigError, match="label_smoothing must be at least 0 and below 1, got 1.0"):
        Config().replace(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="max_val_samples must be at least 1, got 0"):
        Config().replace(max_val_samples=0)


def test_layer_decay_is_checked():
    with pytest.raises(ConfigError, match="layer_decay must be above 0 and at most 1, got 1.5"):
        Config().replace(layer_decay=1.5)


def test_a_path_setting_naming_nothing_is_refused_naming_its_flag(tmp_path):
    from emoclf.config import DataConfig, PredictOptions, ReportOptions, check_paths

    data = tmp_path / "train.csv"
    data.write_text("text,label\nhi,joy\n")
    check_paths(DataConfig, {"data": str(data), "test_data": None})  # present, or not given: nothing to say
    check_paths(DataConfig, {"data": "hf:dair-ai/emotion"})  # not a local path
    check_paths(PredictOptions, {"model": "runs:/abc/model", "input": str(data)})
    with pytest.raises(ConfigError, match=rf"^DATA {tmp_path}/nope.csv: no such file or folder$"):
        check_paths(DataConfig, {"data": str(tmp_path / "nope.csv")})
    with pytest.raises(ConfigError, match=rf"^--test-data {tmp_path}/val.txt: no such file$"):
        check_paths(DataConfig, {"data": str(data), "test_data": str(tmp_path / "val.txt")})
    with pytest.raises(ConfigError, match=rf"^--model {tmp_path}/model: no such model folder$"):
        check_paths(PredictOptions, {"model": str(tmp_path / "model")})
    with pytest.raises(ConfigError, match=rf"^--model {data}: a file, not a folder; give a model folder$"):
        check_paths(PredictOptions, {"model": str(data)})
    with pytest.raises(ConfigError, match=rf"^RUN_DIR {tmp_path}/b: no such folder$"):
        check_paths(ReportOptions, {"runs": [str(tmp_path), str(tmp_path / "b")]})


@pytest.mark.parametrize(
    "setting,value,message",
    [
        ("model_name", "my model", "model_name must be 1 to 96 letters, digits"),
        ("model_name", "x" * 97, "model_name must be 1 to 96 letters, digits"),
        ("language", "English", "language must be ISO 639-1 codes"),
        ("license", "Apache 2.0", "license must be a Hugging Face license id"),
    ],
)
def test_what_the_model_card_says_is_checked(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        Config().replace(**{setting: value})
    assert Config().replace(model_name="minilm-emotion", language="en,fr", license="apache-2.0").model.language == (
        "en,fr"
    )
