import pytest

from vidmamba.config import ConfigError, apply_overrides, load_config


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_overrides_parse_yaml_values_and_keep_the_rest(tmp_path):
    path = write(tmp_path, "task: qvhighlights\nmodel: {name: mlvtg, hidden_dim: 256}\ntrain: {lr: 1.0e-4, amp: none}\n")
    cfg = load_config(path, ["train.lr=3e-4", "model.hidden_dim=64", "train.amp=bf16"])
    assert cfg["train"] == {"lr": 3e-4, "amp": "bf16"}
    assert cfg["model"] == {"name": "mlvtg", "hidden_dim": 64}
    assert cfg["data"] == {}  # missing sections default to empty


def test_unknown_section_is_an_error_naming_it(tmp_path):
    path = write(tmp_path, "model: {hidden_dim: 256}\n")
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        load_config(path, ["optim.lr=1"])
    with pytest.raises(ConfigError, match="'model.hidden_dim' is not a section"):
        load_config(path, ["model.hidden_dim.x=1"])


def test_overrides_create_nested_keys():
    cfg = apply_overrides({"model": {}}, ["model.llm_refiner.layer=20", "train.epochs=3"])
    assert cfg == {"model": {"llm_refiner": {"layer": 20}}, "train": {"epochs": 3}}


def test_override_does_not_mutate_input():
    base = {"train": {"lr": 1}}
    apply_overrides(base, ["train.lr=2"])
    assert base == {"train": {"lr": 1}}


@pytest.mark.parametrize("text, match", [("[1, 2]\n", "expected a mapping"), ("optim: {}\n", "unknown top-level"),
                                         ("model: {a: [\n", "not valid YAML")])
def test_bad_files(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_missing_file_and_malformed_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.lr"])
