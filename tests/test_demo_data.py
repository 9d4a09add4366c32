"""The demo's official-evaluation check reads its data folder from ``--data`` or ``$VIDMAMBA_DATA`` only: no search."""
import pytest

from vidmamba.demo import DATA_ENV, OFFICIAL_EVAL_FILES, golden_qvhighlights, official_eval_folder
from vidmamba.errors import MissingFileError


def _eval_folder(root, files=OFFICIAL_EVAL_FILES):
    (root / "qvhighlights_eval").mkdir(parents=True)
    for name in files:
        (root / "qvhighlights_eval" / name).write_text("")
    return root


def test_no_folder_given_means_no_check_even_beside_a_shared_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    _eval_folder(tmp_path / "shared" / "data")
    monkeypatch.chdir(tmp_path)                 # a development folder next to the working directory is not looked for
    assert official_eval_folder() is None


def test_the_option_wins_over_the_environment(tmp_path, monkeypatch):
    env, option = _eval_folder(tmp_path / "env"), _eval_folder(tmp_path / "option")
    monkeypatch.setenv(DATA_ENV, str(env))
    assert official_eval_folder() == env / "qvhighlights_eval"
    assert official_eval_folder(option) == option / "qvhighlights_eval"
    monkeypatch.setenv(DATA_ENV, "")            # set but empty: as unset
    assert official_eval_folder() is None


def test_a_named_folder_without_the_files_is_an_error_naming_them(tmp_path, monkeypatch):
    partial = _eval_folder(tmp_path / "partial", files=OFFICIAL_EVAL_FILES[:1])
    monkeypatch.setenv(DATA_ENV, str(partial))
    with pytest.raises(MissingFileError, match=r"\$VIDMAMBA_DATA .*partial.*lacks highlight_val_release\.jsonl, "
                                               r"sample_val_preds_metrics_raw\.json"):
        official_eval_folder()
    with pytest.raises(MissingFileError, match=r"--data .*nowhere.*lacks sample_val_preds\.jsonl"):
        official_eval_folder(tmp_path / "nowhere")


def test_demo_refuses_a_wrong_data_folder_in_one_line_before_training(tmp_path, monkeypatch, cli_error):
    monkeypatch.delenv(DATA_ENV, raising=False)
    message = cli_error(["demo", "--data", tmp_path / "nowhere", "--out", tmp_path / "out"])
    assert "--data" in message and "qvhighlights_eval" in message
    assert not (tmp_path / "out").exists()


def test_the_check_passes_on_the_official_files(shared_data):
    if not (shared_data / "qvhighlights_eval").is_dir():
        pytest.skip(f"no qvhighlights_eval in {shared_data}")
    golden = golden_qvhighlights(official_eval_folder(shared_data))
    assert golden["values_checked"] > 0 and not golden["mismatched"]
