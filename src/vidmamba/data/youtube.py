"""YouTube Highlights in UMT's release layout (github TencentARC/UMT, ``datasets/youtube.py``).

Layout under ``root`` (UMT ``configs/_base_/datasets/youtube.py``)::

    youtube_anno.json                              {vid: {"match": [-1 | 0 | 1 per clip], ...}}
    video_features/{vid}_rgb.npy, {vid}_opt.npy    I3D rgb / optical flow, (T, 1024) each, one row per clip
    audio_features/{vid}.npy                       (T, D) audio features (optional)

Facts from UMT's code: a clip is 100 frames, one every 50 frames; a clip is a highlight when ``match > 0`` (so -1 and 0
are both negatives); the 6 domains and their train / val videos live in the code (``datasets/utils/static.py``), not in
the release, and are built in here (:data:`YOUTUBE_SPLITS`); videos of a split missing from the annotation are skipped,
as UMT does (listed in ``YouTubeUMTDataset.missing``). One model per domain; the metric is the per-video AP over all
clips ranked by saliency, averaged over the domain's val videos (:func:`~vidmamba.metrics.highlight.youtube_highlights_map`).
Optional annotation fields, read when present: ``fps`` (then a clip step is ``50 / fps`` seconds; otherwise clip
units of 1 s are used) and ``domain`` (must agree with the split). Feature streams must have T rows, or T + 1 (cut):
the rule of the TVSum release (:mod:`.umt`); not checked on the real YouTube features, which we do not have.

The query: UMT's YouTube configs use no query (``plugins/no_query.py``); lighthouse's jsonl uses the domain name. Here
the query text is the domain name and, without text features (``query_dir``), its features are one token: the one-hot
of the domain's index in :data:`YOUTUBE_DOMAINS`, zero-padded to ``text_dim`` (:func:`domain_query_features`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import is_int, short_repr
from .collate import PaddedCollate
from .errors import DataFormatError
from .features import load_feature_array
from .lighthouse import label_targets
from .umt import load_umt_video_features, video_records

YOUTUBE_DOMAINS = ("dog", "gymnastics", "parkour", "skating", "skiing", "surfing")
YOUTUBE_CLIP_FRAMES = 100
YOUTUBE_CLIP_STEP_FRAMES = 50

# UMT datasets/utils/static.py YOUTUBE_SPLITS (github TencentARC/UMT @ 7a9a71c2), as whitespace-separated video ids.
_SPLITS = {
    "dog": (
        """BsjTtq337mM eGCD1F74iy8 x2Za-t1yHtI iyYiqa0QZXM azy9ijU6f9I NNtSZ6cPiwA U9CBalvFfbM AZDkqJaOgJU -olTgMPAyMI
        i35F1Ec3Ats 6bS6-GVLBeM ZGszTEn28v8 EEb8iSMqwj4 p2hYGNkRMCw 3kbptPDIz4U iLHRqR-M9HQ zyooMDuAgCA dOVsQ63N0gg
        7H_qqQvPUzY Z5BEFsaYIS4 iWO6io44-Fs vVmGisWK0QI L10kN7Btk90 2yql1mvWbDs Iu2nbtr_Uuk NSmOKAauZpM PAhQGoURAro
        uJ81Us4mBOc 1krGVyfIaOw p9yW6FxsrJ4 DLGRJfpGmCQ 0XTXKe2TOAg qpc4OSqeV7I q_PJFuBOk7k 0Uu53hCnKQ4 -szRD9kyNug
        rUPxwWmJYpg hseONiKKx_8 BLaQcOcDfjo nW5JulWYEc8 rMvH1SMGwwI l6KlvTJkTgk O8j4U3NjNvs 8AJTZeEeStk""",
        """a2nj7XCo2Rk 9rP5yF9EC3Y OxSsRZqPfyk bZzP2MieC1c PcvdX5OVgfQ p0oxRJD1GUk msjK8nHZHZ0 hSRyclcZyGM dlH2K9N_jSM
        OCVXhRG2fEA MkBdHvXPocc yN7h90Y-04g PWqLJKZeBC8 9D_Q8l_ruQk Mp8Pz86J660 1gjntnYm8NA O3XxuutEvoo wf_qlAizlSM
        fXx44D1sqUw P0MnXh6bnKk sTd06idFa0E ppNjl3I3iJs Om5mczkpcVg xZIN_s-qhbU"""),
    "gymnastics": (
        """Wfv90YJ2YtA MbD5OIR9yWc fZwCJWkC_Qw AyRI1CioQfY xV_5YCdVqSM 19UO7T32DJI o2gAP2Clg_s ewyfAOrBzjQ CMTKpA683Ig
        aNjphhjTgqs dmJ0Nq4DF2w 57IQ6EudvGU BAlUYtPUsVI _UU4XqYVDqE Kq4OhBiQk_E D6nyvx9kEac g-m4-zeCisU _45vTFtcduE
        9L-Pocc_u70 0636XaURL-A GCabQyaHSMg vUi1Scb35fQ eK-Yuoou_1I kkS7TgNZwJI 2EFkINKg3nA eKvALYDh7RU Hyp3Hpk6dyA
        9rpzf3sgQkw kHNAnpewyeo ydQij10qrZM 41u2V_ZAKto 6NSWsMKAgEU kUs_yUR-C2k bs3ZBcfhvKA""",
        """2AuigNFEsTM rPsKpHKzUso tzq5cJQ9NQA DyZ0gZ5xmxI PEKRfJYYEgU affAIVH9uRA FT7yIi3-tG0 T_zWyrVzyvw RoiLzMA_ilA
        nBZiGSccsTg z3cNtOMKK7A EwQ-aMK2sKg Rq0BpciuvBM s6LNwTThBgs -hE9v3izo4c KldEfRhv7H0 eUyuw2J5FaE E0aRE1_ea8E
        BU7YlQAOBkM iDJM9j11U-c zr5LSPMBpiI NAfBa7lqg2Q eB4Toq9dUWs YPd7RDN5CkE 86YLsw7efDM iQRMMFiYAUw lzEhLAPxZyQ
        PAjJbT1DRnY"""),
    "parkour": (
        """qz1UnnxlWhI MzODICzycHs 0swXWs9yWA4 Nnv22OW_PaI LUhZJLY2uKc yZz8z1l3XJU 3dvjtdMC2ls e27ppPer9XY HJNn2WlKFhM
        j4OxlxnapNI rhABvn7VjSQ 3PCwXpwYqLs LECL1bIpi5w w0ouP79iZWc z6aKQPMJUC0 kATlFTwxBVY 3SM6a8eyuVA v-Sfc4COqRQ
        64eu8pwuIUE 7WKm0XDk3og 2F5Sc0Jgk4g""",
        """TFdbCRkVeIA uGLs9atTvNc qlGPuopK3CI ucTkpjZO_o4 4-4BgyGphLQ 08k4ysX_XJE 6sMNnWqa_as oT6g0I2Ok9o Be4IlnKeBOo
        yUjJq0kvxcw fLek7GRIxjE"""),
    "skating": (
        """7owXLUkpoNY 1OLM0_Jzt5M b1LXb0Sbiy0 3fGux6-ttlA HQvRun80GyA a8M-5nTrll8 bA3CxZllhsI AUAsfZtcB4E FG57uCJvQLw
        jXIuv5uFPTI eG-hdYLoS98 2SdJBl251PU 2PHJqqrGC80 EtZkkFhniRw jUiwyguxzIw FL6mXlaF78Q BdemklZtYWI ATk_ncI1-BA
        4wiKDfq3X8U BN7GBjVlFTo JiMZvMkkbRo 2DIXYkSnRf4 dZ3i-HuhQXM 7jZydh62m8M""",
        """2oOe2_Ew6Ao DGcO0QgcXtw ixsKaNplm6o 7TQbqKWjLcI CQZNrEstSag g1WbAIzkw80 4cyx1VpDjc4 BGZaaqFjoRY AJ98A2y1dVw
        1n7Afe5AZCM 8x8ESK5MnR0"""),
    "skiing": (
        """6Usy87KaF-A DtjKkp_4KDQ 4Wt7TM2wDxI iKnzSGFwdbc nALCc6HPQNs WL4TA--CVcA dFrfsgW1M98 x6qmrVojcYc pvcmQ9J_BYw
        S3VEYFAP_pk pU57a3jYMEk 33TrLdo3ook xLhHU8uo2aY fAHBmka6Psc 9HYzZk5kiJA T0gjqYbeU1g 7o628W-bFy0 YKDm_PCa-HM
        R3DV2zDnNqg NCe9YeXTvHo 5tXxvscmZ-Y thNiPQLbi5w 1TtJy8cSzqA zDRzOsmwa08 gCI4gArPjNA uw0i26NHucs 1giAsZC_ywQ
        OvgaPTfEnqo bFD_p5znoq4 uKmqaAvjKgw 5ivw_sdCTCU iwCSAYGwPq4 HmmOPntPlRA FHCEyiM-NoY EUSFMmoE_jI igvSxtdsT8w
        zEgMYFiEaX4 0K2FKccDp9A tdyz6h4ZtYs PO7GEbi2z3c mmiu7rRmSAU qL6Kic-CdTo 0fNCsOY1WGk V3J26hr1ZSE GS-qBunN3B4
        ZLNvg8025Nw puAxGH6aWMY h-SlvHubhs8 AdovZ4OAS8I UDvA1XMa1m4 qdo3d7mR_9s qAinbyORWIw v1JpJueAElY TjH29fdjcqI
        f76B1uucoyo DNPPDcOd5eQ -GX95udKKm8 YRO_RQ3aBgg 1ptV2E7lm9U qa7dtf1Qcew _UJTkqYNrpA md14DNKq2_o tpewrb9dDyo
        yGoWYi_dHLY DZ3NRjDHwy8 aMFcEuJUqpk 6fT9KLuE7no lPdQMMAuOZo""",
        """SSlv7qJK5zA _BYqZjuKpKA ZueaKXReGjU mGST8ZekCZc JJSu7Lh9rvs IyoD3G5igY0 MXyv-Ut9HRg Z8X9WIojH1U vT33-8KUb2Q
        HW6_sPym938 9wtXO2lF6hM mRdthCqe6Nk RGxiOb9hlS0 ruySf5zL7Kw I7wFmP6P7p0 0AHkDElk3ws zqXd4EgUFhE 91lDbBHUx0w
        iaHbK6ogafc jRbst8kjWW8 drHPy6wSZGs 5VaY6LgIqDs bXq9rRSbI3c hjZLa2DTuqs Ka2qcp3jmWo ZnA4-ggkFu8 iXdt4v42mbs
        8aWN-0NZErI 09v0HNf81J0 YJCR2q-WRhQ RjagI4pAUpw _10CbYdTG5M lhgmIgzBQxs 2pstGBM4p0w b53-VPsWom4 x-G4r153n6o
        qBbqK5qlVSM XamrS9XyHuQ u_n7jMS1vlw AO6p0jlOd6U m-W-lcTkBQ0 bMuyPVIlXW8 kAAvTAKkIy4 U6vnbCurZQA dHE8q7sZ70U
        w7fzLVRPSUc FLYkD7zHuHQ nhOhI24P7dM n5q2KhfoiWw 7Hcyse0h9HE 6_BPy_VaPSY"""),
    "surfing": (
        """Ai9FwQGn5ds hBl0Sm3_auw LMxMeg407Vg D3fk8doVui4 Y9pxmLg6ti8 p_JsivYdbgQ UokX-hcXQeo VYe5QfM5ecE I48VJ92ouTQ
        Tn-ebtUnq6E eWae-nWocPU -Yamat_0tbw c2Fy-rdXJy4 xQ4NAp4vWbI g9kXCIjIjoE A96Jx6gv6_4 e427qElqqN0 tTcA5hiViPo
        wMdXzj_3aA0 fqNzMz1n6uA jKVOA7RFCUo TJBJrk9iPPA _C8EjMxrS2s yj7abHfZTQQ NDcqgpsyWaU UJjwoivaGNo GZ_XS8EnnWo
        kJUBIcBjUZ0 lWoLyR7lDAU FilbyF_PGjI fapRkcOe4vE t05r50PQqww QgStLppe610 2TY8Q2WXUyk 9y_ED3DyNhE CGwtinVGkVU
        nOuRhrAMaIw UN4TwjDajtQ -FHmVZWWgcE ksx0_BfpsLg agOBPDsQrTM XqggBwFOmFU orNzj1J8i-4 6ZbTCHwt1gk 0un3wh_pQAc
        4u6OURBLZDs us0agAKuvEM mVQYl7Q-TQs cB2SdlGHLMQ WK5t4To0zlA NNEuH_juUHI KTU7xfVOat0 Y1nhbNaY1ZY YlXJnZe575s
        SH7Ns0ANzJU 3TbZfeokCkE""",
        """o0on6yIXJQE 4RsZz_8d8Ro p8VUjcZyK70 0P2PZXUa0Bg p2eU5z647Mw mSVxaAJcNJQ bcmXVyFbsRg Eiq8GHi4kEo H5FEdJYokO4
        Mkyp0z_Cgig NB5Ez5kJfMU Xa0y6b6Vm6U gVcCGUtpA90 0-fstXuo_Pw -d72e4v9skA lbp6_wCXqvw 9GpZHq1n8ps CefGXyYu_zU
        SI2JbS48Upg hdklRTNrq0I J-P-t6g19SM K0f_DpVOjfA lw_1fEY9QTo uUuYnKLETLw HwKv3Xc5MAE wvQ0h5Nwsxc l8ME6z_EWKE
        s9dTu2fcbNg GS09SevPYT4 YbwdDCzVczU jaCOI_VwIjc 3Y1Jp1_fFLQ 82OzgxT2tH8 IjQhHPlTfdE KzQcJrT91jU t05AD0c08zE
        rGxWxX6nYO4 QGp0kRzKiAc pK9gDWoOyko Srjd4pe6vck twGcxuhCXoU AshLUHPEb8M 8En3M5CUc2E 8sTJfTUk1d0 o-bubyWTw60
        NctbssxGCtU L09Qo1ql0nM"""),
}
#: {domain: {"train": (vid, ...), "val": (vid, ...)}}: UMT's 6 domain splits (train / val videos per domain).
YOUTUBE_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    d: {"train": tuple(train.split()), "val": tuple(val.split())} for d, (train, val) in _SPLITS.items()}


@dataclass
class YouTubeVideo:
    vid: str
    domain: str
    match: np.ndarray           # (T,) int8 in {-1, 0, 1}
    fps: float | None = None

    @property
    def num_clips(self) -> int:
        return int(self.match.shape[0])

    @property
    def clip_length(self) -> float:
        """Seconds between clip starts (50 frames / fps), or 1.0 (clip units) without ``fps``."""
        return YOUTUBE_CLIP_STEP_FRAMES / self.fps if self.fps else 1.0

    @property
    def label(self) -> np.ndarray:
        """(T,) float32 binary highlight label: ``match > 0`` (UMT ``YouTubeHighlights.get_saliency``)."""
        return (self.match > 0).astype(np.float32)


def domain_of(vid: str) -> str | None:
    """The domain whose UMT split lists ``vid`` (None when no split does)."""
    return next((d for d, s in YOUTUBE_SPLITS.items() if vid in s["train"] or vid in s["val"]), None)


def read_youtube_annotations(root) -> dict[str, YouTubeVideo]:
    """Read and validate ``<root>/youtube_anno.json`` (or ``root`` itself when it names a ``.json`` file) ->
    {vid: YouTubeVideo}, in file order.

    Each video needs ``match`` (a non-empty list of -1 / 0 / 1); ``fps`` (positive) and ``domain`` are optional. The
    domain comes from UMT's splits; a video in none of them needs a ``domain`` field, and a ``domain`` that disagrees
    with the splits is an error.
    """
    path = Path(root) if Path(root).suffix == ".json" else Path(root) / "youtube_anno.json"
    out = {}
    for vid, rec, item in video_records(path, ("match",), "a non-empty {vid: {match, ...}} object"):
        match = rec["match"]
        if not isinstance(match, list) or not match or not all(is_int(m) and m in (-1, 0, 1) for m in match):
            raise DataFormatError(path, "bad value", item=item, field="match",
                                  expected="a non-empty list of -1 / 0 / 1 (one per clip)", found=short_repr(match))
        fps = rec.get("fps")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0
                                or not np.isfinite(fps)):
            raise DataFormatError(path, "bad value", item=item, field="fps", expected="a positive number",
                                  found=short_repr(fps))
        split_domain, domain = domain_of(vid), rec.get("domain")
        if domain is not None and domain not in YOUTUBE_DOMAINS:
            raise DataFormatError(path, "unknown domain", item=item, field="domain",
                                  expected=f"one of {list(YOUTUBE_DOMAINS)}", found=short_repr(domain))
        if domain is not None and split_domain is not None and domain != split_domain:
            raise DataFormatError(path, "domain disagrees with UMT's split", item=item, field="domain",
                                  expected=split_domain, found=domain)
        if domain is None and split_domain is None:
            raise DataFormatError(path, "video is in no UMT split and has no domain", item=item, field="domain",
                                  expected=f"one of {list(YOUTUBE_DOMAINS)}", found="absent")
        out[vid] = YouTubeVideo(vid, domain or split_domain, np.asarray(match, dtype=np.int8),
                                None if fps is None else float(fps))
    return out


def umt_gt_rows(videos: dict[str, YouTubeVideo], domain: str, split: str = "val") -> list[dict]:
    """Ground-truth rows for ``evaluate("youtube", ...)``, ``{"qid": vid, "vid", "domain", "match"}``, of the videos
    of UMT's ``split`` of ``domain`` that ``videos`` holds, in the split's order (UMT skips the others)."""
    return [{"qid": v, "vid": v, "domain": domain, "match": videos[v].match.tolist()}
            for v in YOUTUBE_SPLITS[domain][split] if v in videos]


def domain_query_features(domain: str, text_dim: int) -> np.ndarray:
    """(1, text_dim) float32: the one-hot of ``domain``'s index in :data:`YOUTUBE_DOMAINS`, zero-padded to
    ``text_dim`` (>= 6): the query features of a YouTube video when no text features exist."""
    if domain not in YOUTUBE_DOMAINS:
        raise ValueError(f"unknown YouTube Highlights domain {domain!r}; expected one of {list(YOUTUBE_DOMAINS)}")
    if text_dim < len(YOUTUBE_DOMAINS):
        raise ValueError(f"text_dim must be at least {len(YOUTUBE_DOMAINS)} for the one-hot domain query, "
                         f"got {text_dim}")
    out = np.zeros((1, text_dim), dtype=np.float32)
    out[0, YOUTUBE_DOMAINS.index(domain)] = 1.0
    return out


class YouTubeUMTDataset(PaddedCollate, Dataset):
    """One YouTube Highlights domain's train or val videos (UMT split), one item per video.

    Items use the keys of :class:`~vidmamba.data.lighthouse.MomentDataset` for highlight-only data: ``qid`` (= vid),
    ``vid``, ``query`` (the domain name), ``domain``, ``duration`` (T * clip_length), ``clip_length``, ``video``
    (T, 2048, or 2048 + D_audio with ``audio``), ``text`` (the domain's one-hot (1, text_dim), or (L, D) from
    ``<query_dir>/<vid>.npz`` key ``text_key``), ``saliency`` (T,) float 0/1 (``match > 0``), ``saliency_annotators``
    (T, 1), ``foreground`` (T,) bool (= the label) and ``windows`` (N, 2) seconds / ``windows_norm``: the runs of
    highlight clips (:func:`~vidmamba.data.lighthouse.label_targets`), the fg and span heads' targets.
    """

    sequence_keys = ("video", "text", "windows", "windows_norm", "foreground", "saliency", "saliency_annotators")

    def __init__(self, root, domain: str, split: str, *, normalize: bool = False, audio: bool = False,
                 text_dim: int = 512, query_dir=None, text_key: str = "last_hidden_state"):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if domain not in YOUTUBE_SPLITS:
            raise ValueError(f"unknown YouTube Highlights domain {domain!r}; expected one of {list(YOUTUBE_DOMAINS)}")
        self.root = Path(root)
        self.videos = read_youtube_annotations(self.root)
        wanted = YOUTUBE_SPLITS[domain][split]
        self.vids = [v for v in wanted if v in self.videos]
        self.missing = [v for v in wanted if v not in self.videos]
        if not self.vids:
            raise DataFormatError(self.root / "youtube_anno.json", "dataset is empty: no video of the split",
                                  item=f"domain {domain} ({split})", expected=f"some of {len(wanted)} videos",
                                  found="none")
        if query_dir is None:
            domain_query_features(domain, text_dim)  # checks text_dim now rather than at the first item
        self.domain, self.split = domain, split
        self.normalize, self.audio, self.text_dim = normalize, audio, text_dim
        self.query_dir = None if query_dir is None else Path(query_dir)
        self.text_key = text_key

    def __len__(self) -> int:
        return len(self.vids)

    def sample_lengths(self) -> list[int]:
        """Clips per item, for length-grouped batches."""
        return [self.videos[vid].num_clips for vid in self.vids]

    def gt_rows(self) -> list[dict]:
        """Ground-truth rows for ``evaluate("youtube", ...)``: ``{"qid", "vid", "domain", "match"}`` per video."""
        return umt_gt_rows(self.videos, self.domain, self.split)

    def __getitem__(self, index: int) -> dict:
        v = self.videos[self.vids[index]]
        video = load_umt_video_features(self.root, v.vid, v.num_clips, normalize=self.normalize, audio=self.audio)
        if self.query_dir is None:
            text = domain_query_features(v.domain, self.text_dim)
        else:
            text = load_feature_array(self.query_dir / f"{v.vid}.npz", key=self.text_key, item=f"video {v.vid}")
        label = v.label
        cl = v.clip_length
        return {
            "qid": v.vid, "vid": v.vid, "query": v.domain, "domain": v.domain,
            "duration": v.num_clips * cl, "clip_length": cl,
            "video": torch.from_numpy(video), "text": torch.from_numpy(text),
            "saliency_annotators": torch.from_numpy(label[:, None].copy()), "saliency": torch.from_numpy(label),
            **label_targets(label, "positive", cl),
        }
