"""A shipped config whose data is not on disk says where the public data comes from (its ``source``), on the one
error line that names the missing file."""
from pathlib import Path

import pytest

from vidmamba.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PUBLIC = ["mlvtg_qvhighlights", "mlvtg_qvhighlights_aligner_only", "mlvtg_charades", "mlvtg_charades_aligner_only",
          "hieramamba_ego4d", "hieramamba_mad", "hieramamba_tacos"]


@pytest.mark.parametrize("name", PUBLIC)
def test_missing_public_data_names_its_source(name, tmp_path, monkeypatch, cli_error):
    monkeypatch.chdir(tmp_path)  # the configs' relative data paths point nowhere here
    config = load_config(CONFIGS / f"{name}.yaml")
    message = cli_error(["train", CONFIGS / f"{name}.yaml", "--set", f"train.out_dir={tmp_path / 'run'}"])
    first = config["data"].get("train") or config["data"]["annotations"]
    assert message == f"{first}: annotation file not found; {config['source']}"
    assert "github.com/" in config["source"]


def test_a_missing_file_without_source_is_the_plain_message(tmp_path, cli_error):
    config = tmp_path / "mine.yaml"
    config.write_text((CONFIGS / "mlvtg_clip.yaml").read_text())
    message = cli_error(["train", config, "--set", f"data.train={tmp_path / 'nope.jsonl'}",
                         "--set", f"train.out_dir={tmp_path / 'run'}"])
    assert message == f"{tmp_path / 'nope.jsonl'}: annotation file not found"
