"""TVSum in the UMT layout (the real features in ``shared/data/tvsum_umt``).

Layout under ``root``::

    tvsum_anno.json            {vid: {fps, frames (str), domain, title, url, length, anno: (T, 20) scores 1..5}}
    tvsum_domain_splits.json   {domain: {"train": [4 vids], "val": [1 vid]}}, 10 domains
    video_features/{vid}_rgb.npy, {vid}_opt.npy   I3D rgb / optical-flow, (T, 1024) each, one row per 2-s clip
    audio_features/{vid}.npy                     (T, 2048) audio features
    query_features/{vid}.npz                     CLIP title features: "token" (L, 512), "text" (1, 512)

Facts checked on the real data: 50 videos, 6266 clips in all, 49 to 323 per video; ``T == floor(frames / fps / 2)``
for every video, and rgb / flow always have exactly T rows. The one exception is audio: ``kLxoNp-UchI`` has 65 audio
rows for 64 clips. Rule used here: a feature stream must have T rows, or T + 1 (a trailing partial clip, which is cut);
anything else raises DataFormatError.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import expect_int, expect_matrix, expect_real, expect_str
from .collate import PaddedCollate
from .errors import DataFormatError
from .features import load_feature_array
from .lighthouse import label_targets
from .umt import load_umt_video_features, read_json, video_records

TVSUM_DOMAINS = ("BK", "BT", "DS", "FM", "GA", "MS", "PK", "PR", "VT", "VU")
TVSUM_CLIP_LENGTH = 2.0


@dataclass
class TVSumVideo:
    vid: str
    title: str
    domain: str
    fps: float
    num_frames: int
    scores: np.ndarray  # (T, 20) float32, annotator scores 1..5

    @property
    def num_clips(self) -> int:
        return int(self.scores.shape[0])


def read_tvsum_annotations(root) -> dict[str, TVSumVideo]:
    """Read and validate ``<root>/tvsum_anno.json`` -> {vid: TVSumVideo}, in file order."""
    path = Path(root) / "tvsum_anno.json"
    out = {}
    for vid, rec, item in video_records(path, ("fps", "frames", "domain", "title", "anno"),
                                        "a non-empty {vid: {...}} object"):
        frames = rec["frames"]
        if isinstance(frames, str) and frames.strip().isdigit():
            frames = int(frames)
        scores = np.asarray(expect_matrix(rec["anno"], path, item, "anno"), dtype=np.float32)
        if scores.min() < 1 or scores.max() > 5:
            raise DataFormatError(path, "annotator score out of range", item=item, field="anno",
                                  expected="scores in [1, 5]", found=f"range [{scores.min():g}, {scores.max():g}]")
        domain = expect_str(rec["domain"], path, item, "domain")
        if domain not in TVSUM_DOMAINS:
            raise DataFormatError(path, "unknown domain", item=item, field="domain",
                                  expected=f"one of {list(TVSUM_DOMAINS)}", found=repr(domain))
        out[vid] = TVSumVideo(vid, expect_str(rec["title"], path, item, "title"), domain,
                              expect_real(rec["fps"], path, item, "fps", positive=True),
                              expect_int(frames, path, item, "frames", minimum=1), scores)
    return out


def read_tvsum_domain_splits(root, videos: dict[str, TVSumVideo] | None = None) -> dict[str, dict[str, list[str]]]:
    """Read ``<root>/tvsum_domain_splits.json`` -> {domain: {"train": [vid, ...], "val": [vid, ...]}}.

    Checks that every listed video exists in the annotations with that domain, and that no video appears twice.
    (On the real file: 10 domains, 4 train + 1 val video each, the split of UMT, QD-DETR, UniVTG and lighthouse.)
    """
    path = Path(root) / "tvsum_domain_splits.json"
    data = read_json(path)
    videos = read_tvsum_annotations(root) if videos is None else videos
    if not isinstance(data, dict) or not data:
        raise DataFormatError(path, "bad top level", expected="a non-empty {domain: {train, val}} object",
                              found=type(data).__name__)
    seen: dict[str, str] = {}
    out = {}
    for domain, split in data.items():
        item = f"domain {domain}"
        if not isinstance(split, dict) or set(split) != {"train", "val"}:
            raise DataFormatError(path, "bad split entry", item=item, expected="keys ['train', 'val']",
                                  found=sorted(split) if isinstance(split, dict) else type(split).__name__)
        out[domain] = {}
        for part in ("train", "val"):
            vids = split[part]
            if not isinstance(vids, list) or not vids:
                raise DataFormatError(path, "bad video list", item=item, field=part,
                                      expected="a non-empty list of video ids", found=repr(vids)[:60])
            for vid in vids:
                if vid not in videos:
                    raise DataFormatError(path, "video not in tvsum_anno.json", item=item, field=part,
                                          found=repr(vid))
                if videos[vid].domain != domain:
                    raise DataFormatError(path, "video listed under the wrong domain", item=item, field=part,
                                          expected=f"domain {videos[vid].domain} for {vid}", found=domain)
                if vid in seen:
                    raise DataFormatError(path, "video listed twice", item=item, field=part,
                                          found=f"{vid} also in {seen[vid]}")
                seen[vid] = f"{domain}/{part}"
            out[domain][part] = list(vids)
    return out


#: TVSum's features are in the UMT layout (see :func:`~vidmamba.data.umt.load_umt_video_features`); audio is 2048-d.
load_tvsum_video_features = load_umt_video_features


def load_tvsum_query_features(root, vid: str, *, key: str = "token") -> np.ndarray:
    """CLIP features of the video title: ``token`` (L, 512) or ``text`` (1, 512), float32."""
    return load_feature_array(Path(root) / "query_features" / f"{vid}.npz", key=key, dim=512, item=f"video {vid}")


class TVSumUMTDataset(PaddedCollate, Dataset):
    """One TVSum domain's train or val videos, one item per video (the title is the query).

    Items use the keys of :class:`~vidmamba.data.lighthouse.MomentDataset` for highlight-only data: ``qid`` (= vid),
    ``vid``, ``query``, ``domain``, ``duration`` (T * 2 s), ``clip_length``, ``video`` (T, 2048 or 4096),
    ``text`` (L, 512), ``saliency_annotators`` (T, 20), ``saliency`` (T,) (mean over annotators), ``foreground``
    (T,) bool (clips whose mean score is above the video's median: the metric's binarisation applied to the mean) and
    ``windows`` (N, 2) seconds / ``windows_norm``, one per run of foreground clips
    (:func:`~vidmamba.data.lighthouse.label_targets`): TVSum has no windows, so these are the fg / span targets.
    """

    sequence_keys = ("video", "text", "windows", "windows_norm", "foreground", "saliency", "saliency_annotators")

    def __init__(self, root, domain: str, split: str, *, normalize: bool = False, audio: bool = False,
                 text_key: str = "token"):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.root = Path(root)
        self.videos = read_tvsum_annotations(self.root)
        splits = read_tvsum_domain_splits(self.root, self.videos)
        if domain not in splits:
            raise DataFormatError(self.root / "tvsum_domain_splits.json", "dataset is empty: unknown domain",
                                  item=f"domain {domain}", expected=f"one of {sorted(splits)}", found=repr(domain))
        self.vids = splits[domain][split]
        self.domain, self.split = domain, split
        self.normalize, self.audio, self.text_key = normalize, audio, text_key

    def __len__(self) -> int:
        return len(self.vids)

    def sample_lengths(self) -> list[int]:
        """Clips per item, for length-grouped batches."""
        return [self.videos[vid].num_clips for vid in self.vids]

    def __getitem__(self, index: int) -> dict:
        v = self.videos[self.vids[index]]
        video = load_tvsum_video_features(self.root, v.vid, v.num_clips, normalize=self.normalize, audio=self.audio)
        text = load_tvsum_query_features(self.root, v.vid, key=self.text_key)
        return {
            "qid": v.vid, "vid": v.vid, "query": v.title, "domain": v.domain,
            "duration": v.num_clips * TVSUM_CLIP_LENGTH, "clip_length": TVSUM_CLIP_LENGTH,
            "video": torch.from_numpy(video), "text": torch.from_numpy(text),
            "saliency_annotators": torch.from_numpy(v.scores), "saliency": torch.from_numpy(v.scores.mean(axis=1)),
            **label_targets(v.scores, "median", TVSUM_CLIP_LENGTH),
        }
