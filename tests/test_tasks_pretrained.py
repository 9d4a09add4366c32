"""save_pretrained / from_pretrained / export: predictions survive the round trip, every incompatibility is named."""
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_data import TINY_MLVTG, tiny_mlvtg

from vidmamba import __version__
from vidmamba.cli import main
from vidmamba.engine.checkpoint import CheckpointError, save_checkpoint
from vidmamba.engine.ema import EMA
from vidmamba.tasks import load_trained
from vidmamba.tasks.pretrained import FORMAT_VERSION, PretrainedError, from_pretrained, save_pretrained

DATA = {"clip_length": 2.0, "video_dims": [4, 2], "text_dim": 5, "video_features": ["clip", "slowfast"],
        "text_features": "clip_text", "max_text_len": 8, "encoder": "hf://openai/clip-vit-base-patch32"}


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    vmask = torch.ones(2, 12, dtype=torch.bool)
    vmask[1, 9:] = False
    tmask = torch.ones(2, 4, dtype=torch.bool)
    tmask[0, 3:] = False
    return {"video": torch.randn(2, 12, 6, generator=g), "video_mask": vmask, "text": torch.randn(2, 4, 5, generator=g),
            "text_mask": tmask, "clip_length": torch.tensor([2.0, 2.0]), "duration": torch.tensor([24.0, 18.0])}


def _rewrite(folder, name, data: bytes):
    """Replace one file of a folder and update the size and sha256 recorded in meta.json (a consistent foreign
    folder)."""
    (folder / name).write_bytes(data)
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"][name] = len(data)
    meta["sha256"][name] = hashlib.sha256(data).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta))


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    for dotted, value in changes.items():
        node, *path = dotted.split("__")
        target = cfg if not path else cfg[node]
        target[path[-1] if path else node] = value
    _rewrite(folder, "config.json", json.dumps(cfg).encode())


@pytest.fixture
def saved(tmp_path):
    model = tiny_mlvtg()
    return model, save_pretrained(model, tmp_path / "pre", {"model": TINY_MLVTG, "data": DATA})


def test_round_trip_gives_identical_weights_and_predictions(saved):
    model, folder = saved
    loaded, config = from_pretrained(folder)
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    batch = _batch()
    assert loaded.predict(batch) == model.predict(batch)
    assert config["data"] == {**DATA, "normalize_video": True, "normalize_text": True}
    assert config["model"] == TINY_MLVTG and config["format_version"] == FORMAT_VERSION
    assert config["vidmamba_version"] == __version__
    # a different random model predicts differently: the equality above is not vacuous
    assert tiny_mlvtg(seed=5).predict(batch) != model.predict(batch)


def test_save_refuses_a_config_that_does_not_rebuild_the_model(tmp_path):
    with pytest.raises(PretrainedError, match=r"does not rebuild the given MLVTG: .*shape mismatches: .*expected"):
        save_pretrained(tiny_mlvtg(hidden_dim=8), tmp_path / "x", {"model": TINY_MLVTG, "data": DATA})
    with pytest.raises(PretrainedError, match=r"model.video_dim = 6 disagrees with the data conventions \(7\)"):
        save_pretrained(tiny_mlvtg(), tmp_path / "x", {"model": TINY_MLVTG, "data": {**DATA, "video_dims": [5, 2]}})
    with pytest.raises(PretrainedError, match=r"missing \['clip_length'\]; unknown keys \['fps'\]"):
        data = {k: v for k, v in DATA.items() if k != "clip_length"}
        save_pretrained(tiny_mlvtg(), tmp_path / "x", {"model": TINY_MLVTG, "data": {**data, "fps": 2}})
    with pytest.raises(PretrainedError, match=r"data.video_dims = \[4, 0\]; expected a non-empty list of positive"):
        save_pretrained(tiny_mlvtg(), tmp_path / "x", {"model": TINY_MLVTG, "data": {**DATA, "video_dims": [4, 0]}})
    assert not (tmp_path / "x").exists()


def test_unknown_format_version(saved):
    _, folder = saved
    _edit_config(folder, format_version=2)
    with pytest.raises(PretrainedError, match=rf"config.json: format_version 2 is not supported by vidmamba "
                                              rf"{__version__} \(supports 1; written by vidmamba {__version__}\)"):
        from_pretrained(folder)


def test_unknown_model_name(saved):
    _, folder = saved
    _edit_config(folder, model__name="mlvtg-xl")
    with pytest.raises(PretrainedError, match=r"unknown model name 'mlvtg-xl'; this vidmamba .* knows \[.*'mlvtg'"):
        from_pretrained(folder)


def test_unknown_model_option(saved):
    _, folder = saved
    _edit_config(folder, model__hidden_size=16)
    with pytest.raises(PretrainedError, match=r"cannot build model 'mlvtg' .*model.hidden_size: unknown key; did you mean 'hidden_dim'"):
        from_pretrained(folder)


def test_mis_shaped_tensors(saved):
    _, folder = saved
    _edit_config(folder, model__hidden_dim=32)
    with pytest.raises(CheckpointError, match=r"model.safetensors does not match the model \(MLVTG\): shape "
        r"mismatches: aligner.blocks.0.mixer.A_b_log \(expected \(64, 16\), found \(32, 16\)\)"):
        from_pretrained(folder)


@pytest.mark.parametrize("change, match", [("drop", r"missing keys: video_proj"), ("add", r"unexpected keys: extra.w")])
def test_missing_and_unexpected_tensors(saved, change, match):
    _, folder = saved
    tensors = load_file(folder / "model.safetensors")
    if change == "drop":
        tensors = {k: v for k, v in tensors.items() if not k.startswith("video_proj")}
    else:
        tensors["extra.w"] = torch.zeros(3)
    tmp = folder.parent / "w.safetensors"
    save_file(tensors, tmp)
    _rewrite(folder, "model.safetensors", tmp.read_bytes())
    with pytest.raises(CheckpointError, match=match):
        from_pretrained(folder)


def test_modified_file_and_missing_folder(saved, tmp_path):
    _, folder = saved
    (folder / "config.json").write_text("{}")  # edited without updating meta.json
    with pytest.raises(CheckpointError, match=r"config.json is truncated or modified"):
        from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match=r"pretrained folder .*nowhere/at all: no such folder"):
        from_pretrained(tmp_path / "nowhere" / "at all")


def test_the_hub_is_asked_only_for_an_hf_id(saved, monkeypatch, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    _, folder = saved
    calls = []
    monkeypatch.setattr(hub, "snapshot_download",
                        lambda repo_id, revision=None, **kw: calls.append((repo_id, revision)) or str(folder))
    model, _ = from_pretrained("hf://someone/vidmamba-tiny@v1.0")
    assert calls == [("someone/vidmamba-tiny", "v1.0")] and model.cfg.hidden_dim == 16
    from_pretrained("hf://someone/vidmamba-tiny")
    assert calls[-1] == ("someone/vidmamba-tiny", None)
    monkeypatch.chdir(tmp_path)  # owner/name: a relative local path, never a hub id
    with pytest.raises(FileNotFoundError, match=r"^pretrained folder someone/local: no such folder \(to fetch it "
                                                r"from the Hugging Face hub, write hf://someone/local\)$"):
        from_pretrained("someone/local")
    (tmp_path / "someone").mkdir()
    folder.rename(tmp_path / "someone" / "local")
    from_pretrained("someone/local")
    assert len(calls) == 2


def test_export_a_trained_run_uses_its_ema_weights(tmp_path):
    model = tiny_mlvtg()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    ema.update(model)  # shadow = weights + 0.05: differs from both the start and the raw weights
    experiment = {"task": "qvhighlights", "model": TINY_MLVTG,
                  "data": {"dataset": "qvhighlight", "feature_root": "f", "train": "t.jsonl", "val": "v.jsonl",
                           "video_features": ["clip", "slowfast"], "video_dims": [4, 2], "text_features": "clip_text",
                           "text_dim": 5, "max_text_len": 8},
                  "train": {}}
    save_checkpoint(tmp_path / "run" / "best", model, config={"trainer": {}, "experiment": experiment},
                    ema_state=ema.state_dict())
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "pre")]) == 0
    exported, config = from_pretrained(tmp_path / "pre")
    reference, _, _ = load_trained(tmp_path / "run")  # the run's inference model: raw weights overwritten by EMA
    batch = _batch()
    assert exported.predict(batch) == reference.predict(batch) != model.predict(batch)
    assert load_trained(tmp_path / "pre")[0].predict(batch) == reference.predict(batch)  # what `predict` loads
    assert config["data"] == {"clip_length": 2.0, "video_dims": [4, 2], "text_dim": 5, "video_features":
                              ["clip", "slowfast"], "text_features": "clip_text", "max_text_len": 8,
                              "dataset": "qvhighlight", "normalize_video": True, "normalize_text": True}
    with pytest.raises(PretrainedError, match=r"a training checkpoint: convert it with `vidmamba export"):
        from_pretrained(tmp_path / "run" / "best")
