"""MLVTG on inputs of any length: spans in clips of the training length (hand cases), the paper's head kept exactly on
training-length inputs, automatic half-overlapping windows, training windows without the truth (negatives), a tiny
trained model whose truth window outranks the others, and ``vidmamba predict`` on a 1-hour video."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from tiny_data import data_section, make_snag
from vidmamba.cli import main
from vidmamba.data.snag import seconds_to_grid
from vidmamba.models import create_model
from vidmamba.tasks import get_task
from vidmamba.tasks.long_grounding import build_dataset, moment_batch

TINY = dict(video_dim=6, text_dim=4, hidden_dim=16, num_layers=1, d_state=4)


class FixedHead(nn.Module):
    """Hand-set head outputs: ``logits`` (T,) and sigmoid offsets (T, 2), cut to the input's length."""

    def __init__(self, logits, offsets):
        super().__init__()
        self.logits, self.offsets = torch.tensor(logits), torch.tensor(offsets)

    def forward(self, x, mask):
        b, lv = x.shape[:2]
        return self.logits[:lv].expand(b, lv), self.offsets[:lv].expand(b, lv, 2)


def batch_of(video, text, clip_length=2.0):
    return {"video": video[None], "text": text[None], "clip_length": [clip_length]}


def test_spans_are_offsets_in_training_clips_hand_case():
    """8 clips of 2 s, train_clips 4, clip 2 the only confident one with sigmoid offsets (0.25, 0.5): centre 2.5
    clips, 0.25 x 4 = 1 clip left and 0.5 x 4 = 2 clips right -> [1.5, 4.5] clips = [3, 9] s. UniVTG's unit (the
    input, 8 clips): 2 and 4 clips -> [0.5, 6.5] clips = [1, 13] s."""
    logits = [-9.0, -9.0, 5.0, -9.0, -9.0, -9.0, -9.0, -9.0]
    video, text = torch.randn(8, 6), torch.randn(3, 4)
    for unit, expected in (("train_clips", [3.0, 9.0]), ("input", [1.0, 13.0])):
        model = create_model("mlvtg", **TINY, train_clips=4, span_unit=unit, long_video="whole", score_mode="fg")
        model.head = FixedHead(logits, [[0.25, 0.5]] * 8)
        top = model.predict(batch_of(video, text))[0]["pred_relevant_windows"][0]
        np.testing.assert_allclose(top, expected + [1 / (1 + math.exp(-5.0))], rtol=1e-6)


@pytest.mark.parametrize("use_tef", [False, True])
def test_paper_head_exactly_on_training_length_inputs(use_tef):
    """The same weights with spans in units of the input (UniVTG) and of train_clips: identical outputs on a 75-clip
    (QVHighlights-length) input; on a 40-clip input the spans (and the TEF columns) differ. A model without
    ``train_clips`` (a checkpoint written before it existed) keeps UniVTG's head at every length, 200 clips too."""
    torch.manual_seed(0)
    new = create_model("mlvtg", **TINY, use_tef=use_tef, train_clips=75)
    old = create_model("mlvtg", **TINY, use_tef=use_tef, train_clips=75, span_unit="input")
    legacy = create_model("mlvtg", **TINY, use_tef=use_tef)
    old.load_state_dict(new.state_dict())
    legacy.load_state_dict(new.state_dict())
    new.eval(), old.eval(), legacy.eval()
    text = torch.randn(5, 4)
    for T, same in ((75, True), (40, False)):
        batch = batch_of(torch.randn(T, 6), text)
        with torch.no_grad():
            a, b = new(batch), old(batch)
        assert torch.equal(a["spans"], b["spans"]) == same
        assert torch.equal(a["logits"], b["logits"]) == (same or not use_tef)
        if same:
            assert new.predict(batch) == old.predict(batch)
    old.cfg.long_video = "whole"
    for T in (40, 200):                        # no train_clips: UniVTG's unit, and a long input read whole
        batch = batch_of(torch.randn(T, 6), text)
        with torch.no_grad():
            assert torch.equal(legacy(batch)["spans"], old(batch)["spans"])
        assert legacy.predict(batch) == old.predict(batch)


class RecordingAligner(nn.Module):
    """An aligner that ignores the query and returns the video tokens it was given (kept in ``seen``)."""

    def forward(self, video, video_mask, text, text_mask, refiner=None):
        self.seen = video
        return video


def test_query_fusion_gives_each_clip_its_match_to_the_query():
    """query_fusion "product" with an identity fusion layer: the aligner's video tokens are those of the default
    model plus v * s (v: projected clips, s: the attentively pooled projected query, computed here by hand). With an
    aligner that ignores the query, the default model's foreground logits are the same for any query (the scan is its
    only way to the query); with the fusion they are not. The default builds no fusion weights, so checkpoints written
    without it load as before."""
    torch.manual_seed(0)
    plain = create_model("mlvtg", **TINY, input_dropout=0.0)
    fused = create_model("mlvtg", **TINY, input_dropout=0.0, query_fusion="product")
    assert not any(k.startswith("query_fusion") for k in plain.state_dict())
    fused.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        fused.query_fusion.weight.copy_(torch.eye(16))
        fused.query_fusion.bias.zero_()
    for m in (plain, fused):
        m.aligner = RecordingAligner()
        m.eval()
    video, text, other = torch.randn(9, 6), torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        v, q = plain.video_proj(video), plain.text_proj(text)
        attn = torch.softmax(q @ plain.saliency_head.pool.score.weight[0], 0)
        s = (attn[:, None] * q).sum(0)
        logits = {}
        for name, m in (("plain", plain), ("fused", fused)):
            logits[name] = [m(batch_of(video, t))["logits"] for t in (text, other)]
            m(batch_of(video, text))
        torch.testing.assert_close(fused.aligner.seen[0] - plain.aligner.seen[0], v * s)
    assert torch.equal(*logits["plain"])
    assert (logits["fused"][0] - logits["fused"][1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="query_fusion"):
        create_model("mlvtg", **TINY, query_fusion="sum")


def test_windowed_candidates_hand_case():
    """11 clips, train_clips 4: windows start at 0, 2, 4, 6 and 7 (the last one ends at the video's end). A hand-set
    pass gives each clip the window [t, t + 1] (t: its index in the window), score = feature 0 of the clip and
    saliency t; shifted to the video, every candidate is [g, g + 1] (g: the clip's index in the video) and a clip's
    saliency is the mean of t over the windows that hold it."""
    model = create_model("mlvtg", **TINY, train_clips=4, window_batch=2)   # 2 windows per pass: 3 passes
    seen = []

    def one_pass(video, vmask, text, tmask):
        k, w = video.shape[:2]
        seen.append(k)
        t = torch.arange(w, dtype=torch.float32)
        return (torch.stack([t, t + 1], -1).expand(k, w, 2), video[..., 0], t.expand(k, w))

    model._clip_candidates = one_pass
    video = torch.zeros(11, 6)
    video[:, 0] = torch.linspace(0.0, 0.5, 11)
    video[9, 0] = 0.9
    segs, scores, sal = model.candidates(batch_of(video, torch.randn(2, 4)))[0]
    assert seen == [2, 2, 1]
    g = torch.tensor([a + t for a in (0, 2, 4, 6, 7) for t in range(4)], dtype=torch.float32)
    torch.testing.assert_close(segs, torch.stack([g, g + 1], -1))
    torch.testing.assert_close(scores, video[g.long(), 0])
    torch.testing.assert_close(sal, torch.tensor([0, 1, 1, 2, 1, 2, 1, 4 / 3, 1.5, 2.5, 3]))
    top = model.predict(batch_of(video, torch.randn(2, 4)))[0]
    assert top["pred_relevant_windows"][0] == pytest.approx([18.0, 20.0, 0.9])   # clip 9, 2-s clips
    assert len(top["pred_saliency_scores"]) == 11
    # no window for an input of the training length, or when asked to read it whole
    seen.clear()
    model.candidates(batch_of(video[:4], torch.randn(2, 4)))
    model.cfg.long_video = "whole"
    model.candidates(batch_of(video, torch.randn(2, 4)))
    assert seen == [1, 1]


# ---------------------------------------------------------------------------------------------------------------------
# negatives
# ---------------------------------------------------------------------------------------------------------------------
def test_training_windows_take_negative_queries_outside_the_window(tmp_path):
    root = make_snag(tmp_path, 6, 4, lengths=(120, 150), queries=12, seed=1)
    data = get_task("nlq").data_options(data_section(root, max_clips=20, max_queries=2, negative_queries=3))
    ds = build_dataset(data, "train", train=True)
    torch.manual_seed(0)
    found = kept = 0
    for i in range(len(ds)):
        item = ds[i]
        neg = item["negative"]
        assert len(neg) == len(item["texts"]) == len(item["segments"]) and neg.sum() <= 3
        assert not neg[: int((~neg).sum())].any(), "the group's queries first"
        v = next(v for v in ds.videos if v.vid == item["vid"])
        a, n = item["offset"], item["video"].shape[0]
        for sid, is_neg in zip(item["text_ids"], neg.tolist()):
            seg = np.array(next(q.segment for q in v.queries if q.text_id == sid))
            clip_s, clip_e = seconds_to_grid(seg, fps=v.fps, clip_size=32, stride=16, num_frames=v.num_frames)
            inside = clip_e + 0.5 > a and clip_s - 0.5 < a + n                # clip i spans [i - 0.5, i + 0.5]
            assert not (is_neg and inside), (sid, a, n, clip_s, clip_e)
            kept += int(inside and not is_neg)
        found += int(neg.sum())
    assert found > 0 and kept > 0
    batch = ds.collate([ds[0], ds[1]])
    mb = moment_batch(batch)
    neg = batch["negative"]
    assert not mb["foreground"][neg].any() and not mb["windows_mask"][neg].any()
    assert mb["foreground"][~neg].any(1).all() and mb["windows_mask"][~neg].all()


# ---------------------------------------------------------------------------------------------------------------------
# a tiny trained model: its scores compare across windows
# ---------------------------------------------------------------------------------------------------------------------
def needle_window(rng, patterns, length, events, noise=1.0):
    """(length, D) noise with the events [(class, start, clips)] painted as their class pattern."""
    x = noise * rng.normal(size=(length, patterns.shape[1]))
    for c, s, n in events:
        x[s:s + n] += patterns[c]
    return torch.tensor(x, dtype=torch.float32)


STEPS = 150


@pytest.mark.slow
def test_trained_mlvtg_ranks_the_window_holding_the_truth_first():
    """Needles: 6 event classes (a pattern each, 3..6 clips) in noise; the query names a class (its text token). A
    tiny MLVTG trained on 32-clip windows, half of them without the queried event (negatives), then asked about
    384-clip videos with one event of each class: among the video's half-overlapping windows, the one that holds the
    truth has the highest score for most queries, and the merged top-1 window hits the truth."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    classes, dim, window = 6, 12, 32
    patterns = 2.0 * rng.normal(size=(classes, dim)) / math.sqrt(dim) * 2
    words = torch.eye(classes, 8)
    model = create_model("mlvtg", video_dim=dim, text_dim=8, hidden_dim=32, num_layers=1, d_state=8,
                         train_clips=window, input_dropout=0.0, drop_path=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(STEPS):
        videos, texts, fgs, wins = [], [], [], []
        for _ in range(16):
            c, other = rng.choice(classes, 2, replace=False)
            present = rng.random() < 0.5
            n, m = int(rng.integers(3, 7)), int(rng.integers(3, 7))
            s = int(rng.integers(0, window - n))
            o = int(rng.integers(0, window - m))
            events = ([(c, s, n)] if present else []) + ([(other, o, m)] if abs(o - s) > 8 or not present else [])
            videos.append(needle_window(rng, patterns, window, events))
            texts.append(words[c][None])
            fg = torch.zeros(window, dtype=torch.bool)
            fg[s:s + n] = present
            fgs.append(fg)
            wins.append([s * 2.0, (s + n) * 2.0])
        batch = {"video": torch.stack(videos), "text": torch.stack(texts), "foreground": torch.stack(fgs),
                 "windows": torch.tensor(wins)[:, None], "windows_mask": torch.stack(fgs).any(1)[:, None],
                 "saliency": torch.stack(fgs).float(),
                 "clip_length": [2.0] * 16}
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    first = hits = total = 0
    for v in range(4):
        length = 384
        starts = rng.permutation(np.arange(0, length - 8, 24))[:classes]
        events = [(c, int(s), int(rng.integers(3, 7))) for c, s in enumerate(starts)]
        video = needle_window(rng, patterns, length, events)
        windows = list(range(0, length - window, window // 2)) + [length - window]
        for c, s, n in events:
            with torch.no_grad():
                out = model.encode({"video": torch.stack([video[a:a + window] for a in windows]),
                                    "text": words[c][None].expand(len(windows), 1, 8)})
            best = model.scores(out).max(1).values
            holding = [i for i, a in enumerate(windows) if a <= s and s + n <= a + window]
            first += int(int(best.argmax()) in holding)
            top = model.predict(batch_of(video, words[c][None]))[0]["pred_relevant_windows"][0]
            inter = max(0.0, min(top[1], (s + n) * 2.0) - max(top[0], s * 2.0))
            hits += int(inter / (top[1] - top[0] + n * 2.0 - inter) >= 0.5)
            total += 1
    assert first / total >= 0.7, f"the truth's window ranked first for {first} of {total} queries"
    assert hits / total >= 0.5, f"top-1 IoU >= 0.5 for {hits} of {total} queries"


# ---------------------------------------------------------------------------------------------------------------------
# vidmamba predict on a 1-hour video
# ---------------------------------------------------------------------------------------------------------------------
def _median_length(windows):
    return float(np.median([e - s for s, e, _ in windows]))


def test_predict_on_a_one_hour_video_gives_spans_of_the_training_scale(grounding_run, tmp_path):
    """A run trained on 16..40-clip videos (events of at most 8 clips), asked through ``vidmamba predict`` about a
    1-hour video (1,800 2-s clips): its windows are as long as on a training-length video, not 1800 / 40 = 45 times
    longer as with spans in units of the input read whole (checked on the same weights, so the check can fail)."""
    tmp, bench, _ = grounding_run
    stored = json.loads((tmp / "run" / "last" / "config.json").read_text())["experiment"]
    longest = max(math.ceil(json.loads(line)["duration"] / 2 - 1e-6)
                  for line in (bench / "train.jsonl").read_text().splitlines())
    assert stored["model"]["train_clips"] == longest    # the training length is stored with the weights
    first = json.loads((bench / "val.jsonl").read_text().splitlines()[0])
    short = np.load(bench / "video" / f"{first['vid']}.npz")["features"]
    hour = np.resize(short, (1800, short.shape[1]))     # the val video repeated to one hour
    np.savez(tmp_path / "hour.npz", features=hour)
    query = str(bench / "text" / f"qid{first['qid']}.npz")
    answers = {}
    for name, video in (("short", bench / "video" / f"{first['vid']}.npz"), ("hour", tmp_path / "hour.npz")):
        out = tmp_path / f"{name}.json"
        assert main(["predict", "--ckpt", str(tmp / "run"), "--video-features", str(video), "--query-features", query,
                     "--query", first["query"], "--out", str(out)]) == 0
        answers[name] = json.loads(out.read_text())
    assert len(answers["hour"]["saliency"]) == 1800
    answers = {k: v["windows"] for k, v in answers.items()}
    ratio = _median_length(answers["hour"]) / _median_length(answers["short"])
    assert 1 / 3 < ratio < 3, ratio
    # the same weights with UniVTG's unit (the input) reading the hour whole: spans scale with the video
    model, config = get_task("qvhighlights").load_trained(tmp / "run" / "last")
    model.cfg.span_unit, model.cfg.long_video = "input", "whole"
    task = get_task("qvhighlights")
    video, texts = task.read_feature_files(config, [tmp_path / "hour.npz"], query)[:2]
    old = task.predict_clips(model, config, video, texts, 3600.0)[0]["windows"]
    assert _median_length(old) / _median_length(answers["short"]) > 10
