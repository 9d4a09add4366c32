"""The README's "Your own video" path: one lighthouse jsonl per split feeds both families. `extract --annotations`
writes the SnAG json of the nlq task (checked here against hand-written expectations), and the shipped
configs/mlvtg_clip.yaml and configs/hieramamba_clip.yaml train on what `extract` wrote and answer `predict`."""
import json
from pathlib import Path

import pytest

from vidmamba.data.errors import DataFormatError
from vidmamba.data.snag import read_snag_json, snag_from_lighthouse

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_snag_from_lighthouse_by_hand(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [
        {"qid": 3, "query": "a door opens", "vid": "a", "duration": 20.0, "relevant_windows": [[4, 8]]},
        {"qid": 4, "query": "someone sits", "vid": "a", "duration": 20.0, "relevant_windows": [[10, 20]]},
        {"qid": 5, "query": "a dog", "vid": "b", "duration": 9.5, "relevant_windows": [[0, 2]]}])
    val = _jsonl(tmp_path / "val.jsonl", [
        {"qid": 9, "query": "rain", "vid": "c", "duration": 6.0, "relevant_windows": [[2, 6]]}])
    got = snag_from_lighthouse({"train": train, "val": val}, clip_length=2.0)
    assert got == {
        "train": {"a": {"fps": 0.5, "duration": 20.0, "annotations": [
                      {"segment": [4.0, 8.0], "sentence": "a door opens", "sentence_id": "qid3"},
                      {"segment": [10.0, 20.0], "sentence": "someone sits", "sentence_id": "qid4"}]},
                  "b": {"fps": 0.5, "duration": 9.5, "annotations": [
                      {"segment": [0.0, 2.0], "sentence": "a dog", "sentence_id": "qid5"}]}},
        "val": {"c": {"fps": 0.5, "duration": 6.0, "annotations": [
                    {"segment": [2.0, 6.0], "sentence": "rain", "sentence_id": "qid9"}]}}}
    # the nlq reader accepts it (tacos names text files by the bare qid)
    path = tmp_path / "anno.json"
    path.write_text(json.dumps(got))
    assert [q.text_id for v in read_snag_json(path, "train") for q in v.queries] == ["qid3", "qid4", "qid5"]
    tacos = snag_from_lighthouse({"val": val}, clip_length=2.0, dataset="tacos")
    assert tacos["val"]["c"]["annotations"][0]["sentence_id"] == "9"


@pytest.mark.parametrize("rows,message", [
    ([{"qid": 1, "query": "q", "vid": "a", "duration": 20.0, "relevant_windows": [[0, 2], [4, 6]]}],
     r"line 1 \(qid 1\): field 'relevant_windows': the nlq task .* one relevant window per query"),
    ([{"qid": 1, "query": "q", "vid": "a", "duration": 20.0, "relevant_windows": [[0, 2]]},
      {"qid": 2, "query": "r", "vid": "a", "duration": 22.0, "relevant_windows": [[0, 2]]}],
     r"line 2 \(qid 2\): field 'duration': video a has two durations"),
])
def test_snag_from_lighthouse_errors_name_the_line(tmp_path, rows, message):
    path = _jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataFormatError, match=message):
        snag_from_lighthouse({"train": path}, clip_length=2.0)


TINY = {"mlvtg_clip": ["model.hidden_dim=16", "model.num_layers=1", "train.epochs=1", "train.progress=false"],
        "hieramamba_clip": ["model.video_dim=12", "model.text_dim=16", "model.embd_dim=16", "model.num_blocks=3", "model.max_seq_len=32", "model.d_state=8",
                            "model.headdim=8", "model.text_embd_dim=16", "model.text_layers=1",
                            "model.fusion_layers=1", "data.max_clips=16", "train.batch_size=1", "train.epochs=1",
                            "train.warmup_epochs=0", "train.progress=false"]}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """5 generated videos, a tiny random CLIP, `vidmamba extract --annotations train.jsonl val.jsonl`."""
    pytest.importorskip("av")
    pytest.importorskip("transformers")
    from vidmamba.cli import main
    from vidmamba.video.encoders import save_tiny_clip
    from vidmamba.video.synthetic import write_video

    tmp = tmp_path_factory.mktemp("own")
    clip = save_tiny_clip(tmp / "clip", image_dim=12, text_dim=16)
    rows = {"train": [], "val": []}
    videos = []
    (tmp / "videos").mkdir()
    for k, seconds in enumerate((16, 20, 12, 18, 14)):
        videos.append(write_video(tmp / "videos" / f"v{k}.mp4", [i / 2 for i in range(2 * seconds)]))
        split = "val" if k == 4 else "train"
        for j in range(2):
            rows[split].append({"qid": 10 * k + j, "query": f"event {j} of video {k}", "vid": f"v{k}",
                                "duration": float(seconds), "relevant_windows": [[2 * j, 2 * j + 4]]})
    files = [_jsonl(tmp / f"{split}.jsonl", split_rows) for split, split_rows in rows.items()]
    feats = tmp / "feats"
    assert main(["extract", *map(str, videos), "--out", str(feats), "--model", str(clip),
                 "--annotations", *map(str, files), "--no-progress"]) == 0
    return tmp, clip, videos, files, feats


def test_extract_writes_the_nlq_annotations(extracted):
    tmp, _, _, files, feats = extracted
    expected = snag_from_lighthouse({"train": files[0], "val": files[1]}, clip_length=2.0)
    assert json.loads((feats / "annotations.json").read_text()) == expected
    assert {p.name for p in (feats / "clip_text_features").iterdir()} == {
        f"qid{10 * k + j}.npz" for k in range(5) for j in range(2)}


@pytest.mark.parametrize("name", ["mlvtg_clip", "hieramamba_clip"])
def test_shipped_clip_config_trains_and_predicts(extracted, name, capsys):
    from vidmamba.cli import main

    tmp, clip, videos, files, feats = extracted
    sets = {"mlvtg_clip": [f"data.feature_root={feats}", f"data.train={files[0]}", f"data.val={files[1]}"],
            "hieramamba_clip": [f"data.annotations={feats / 'annotations.json'}",
                                f"data.video_features=[{feats / 'clip_features'}]",
                                f"data.text_features={feats / 'clip_text_features'}"]}[name]
    run = tmp / f"run_{name}"
    args = [a for s in sets + TINY[name] + [f"train.out_dir={run}"] for a in ("--set", s)]
    assert main(["train", str(CONFIGS / f"{name}.yaml"), *args]) == 0
    capsys.readouterr()
    answer = tmp / f"{name}.json"
    assert main(["predict", str(videos[4]), "event 0", "--ckpt", str(run), "--encoder", str(clip),
                 "--cache", str(tmp / "cache"), "--json", str(answer)]) == 0
    printed = capsys.readouterr().out
    assert "query: event 0" in printed and "top clips by saliency" in printed and "score:" in printed
    result = json.loads(answer.read_text())
    assert result["num_clips"] == 7 and result["results"][0]["windows"]
