"""Can a mixer learn to pick the right copy of X by context, and in how many steps? Clean tokens or the benchmark's
features; a per-clip score, or the whole HieraMamba with its detection heads.

The long-context benchmark (``benchmarks/long_context.py``) asks a grounding model to find an event X in noisy
features and to pick one of its copies by context. This probe keeps only the second part: every clip is a clean
token (background, or an event of ``--event`` clips of one of ``--types`` kinds), copies of X and the context Y at
least ``--sep`` clips apart (starts on multiples of it), and a per-clip score head trained with cross-entropy over
positions (the answer's clips share the target; ``--loss focal``: HieraMamba's classification loss instead, a sigmoid
focal loss per clip with the model's defaults, answer clips positive, summed and divided by the positives). Two
tasks:

* ``fixed``: always "the first X after Y", X and Y the same two tokens in every sequence;
* ``query``: as the benchmark, every sequence has its own X and Y (drawn from ``--types`` event kinds, two more
  kinds as distractors) and its own kind: "the first X after Y", "the last X before Y", "the second / third X". The
  query (kind, X, Y embeddings, summed) enters every clip by an adaLN-style fusion, ``LayerNorm(v) * (1 + s) + b``
  with ``(s, b) = Linear(q)``, as HieraMamba's early fusion does, and the mixer sees the fused clips.

Inputs: ``tokens`` (a learned vector per kind, plus noise of std 0.1) or ``features``: the long-context benchmark's
video features (``configs/hieramamba_long_context.yaml``'s ``data.synthetic`` world; each kind is one of its
(verb, object) pairs, painted over its AR(1) background and rendered by its MLP with its observation noise), read
through a linear layer. Query (``--query``): ``learned`` (the vectors and adaLN fusion above) or ``text``: the
benchmark's sentence for it ("the first time <X> after <Y>", X and Y as the world words them), encoded by the
world's frozen text encoder, read by HieraMamba's query path (its text encoder, ``--text-encoder``: ``identity`` as
the long-context config or ``transformer``; its cross-attention fusion, before the mixer and again after it).

Training data: fresh sequences every step, or (``--train-pool N``) N sequences drawn once and visited every epoch
in a fresh order, as a benchmark's finite training set is; the curve then also scores the first 128 of them.

Mixers (width 32, d_state 16): ``mamba1`` (two causal Mamba-1 mixers, pre-norm residual), ``hydra`` (one Hydra
mixer, head width 16), ``amp`` (HieraMamba's backbone at the long-context config's width, its level-0 features:
one Anchor-MambaPooling block, official init), or ``hieramamba``: the whole model of the long-context config
(``configs/hieramamba_long_context.yaml``: text encoder, early fusion, the 4-level pyramid, fusion on every level,
classification and regression heads, its focal + IoU loss; needs ``--query text``; tokens enter it one-hot, plus
noise). AdamW lr 1e-3, weight decay 0.05, gradient clip 1, batch 8, one thread. Scored every ``--eval-every``
steps on 128 fresh sequences (a hit: the top-scoring clip lies in the answer; ``hieramamba``: its top-1 moment has
IoU >= 0.5 with the answer, the benchmark's R1@0.5, and ``acc_clip`` / ``x_found_clip`` the other probes' hit on
its clip of highest level-0 foreground probability), with ``x_found``: the same hit on any copy of X;
``steps_to_90``: the first evaluation at which every kind scores >= 90 %. ``--model KEY=VALUE``: the whole
model's config values in place of the config's (``num_blocks=1``: one level, no pyramid). ``--detach``: stops a part
of the gradient that the levels above level 0 send back (``anchors``: into the blocks below; ``features``: into the
blocks, fusion and text encoder, so that only the heads learn from them; ``outputs``: all of it).
``--loss-norm-scale F``: the loss normaliser counts F times the positive points. ``--init-levels N``: start from the
weights a model of N levels draws. Every evaluation prints its curve point to stderr.

    python benchmarks/context_probe.py --task fixed --mixers mamba1 hydra amp --clips 1024 4096 --steps 600
    python benchmarks/context_probe.py --task query --mixers hydra amp --clips 1024 --steps 4000 --out /tmp/q.json
    python benchmarks/context_probe.py --task query --mixers amp --inputs features --steps 2000 --out /tmp/f.json
    python benchmarks/context_probe.py --task query --mixers amp --inputs features --train-pool 768 --steps 2000
    python benchmarks/context_probe.py --task query --mixers hieramamba --query text --steps 3000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "hieramamba_long_context.yaml"  # the benchmark's world and model
sys.path.insert(0, str(REPO / "src"))

from vidmamba.config import load_config, parse_override  # noqa: E402
from vidmamba.data.synthetic import _World, _background_latent, _paint_event  # noqa: E402
from vidmamba.data.synthetic_long_context import _add_words, _query_text  # noqa: E402
from vidmamba.data.synthetic_long_context import _resolve as _resolve_long_context  # noqa: E402
from vidmamba.models import create_model, model_config  # noqa: E402
from vidmamba.models.hieramamba import (HieraMambaBackbone, HieraMambaConfig, build_fusion,  # noqa: E402
                                        build_text_encoder)
from vidmamba.nn.losses import sigmoid_focal_loss  # noqa: E402
from vidmamba.nn.segments import segment_iou  # noqa: E402
from vidmamba.ssm.hydra import Hydra  # noqa: E402
from vidmamba.ssm.layers import RMSNorm  # noqa: E402
from vidmamba.ssm.mamba1 import Mamba1  # noqa: E402
from vidmamba.utils import print_and_write_json  # noqa: E402

WIDTH = 32
KINDS = ("first_after", "last_before", "second", "third")
EVAL_SEQUENCES = 128


def sample(rng: np.random.Generator, task: str, clips: int, sep: int, event: int, types: int):
    """One sequence: (tokens (clips,) int64, answer start, query (kind, x, y)); token 0 is background, y = 0 for
    the ordinal kinds (they name no context). K = 4..6 copies of X, one Y with a copy on each side, two distractor
    events; every event starts on a multiple of ``sep``."""
    kind, x, y = 0, 1, 2
    if task == "query":
        kind = int(rng.integers(len(KINDS)))
        x, y = (int(t) for t in rng.choice(np.arange(1, types + 1), 2, replace=False))
    others = [t for t in range(1, types + 1) if t not in (x, y)]
    slots = np.arange(0, clips - event, sep)
    while True:
        copies = int(rng.integers(4, 7))
        starts = np.sort(rng.choice(slots, size=copies + 3, replace=False))
        roles = rng.permutation(["x"] * copies + ["y", "d", "d"])
        xs = [int(s) for s, r in zip(starts, roles) if r == "x"]
        ys = int(starts[list(roles).index("y")])
        if min(xs) < ys < max(xs):
            break
    tokens = np.zeros(clips, np.int64)
    for s, r in zip(starts, roles):
        tokens[s:s + event] = x if r == "x" else y if r == "y" else others[int(rng.integers(len(others)))]
    answer = (min(s for s in xs if s > ys), max(s for s in xs if s < ys), xs[1], xs[2])[kind]
    return tokens, answer, (kind, x, y if KINDS[kind] in ("first_after", "last_before") else 0)


class BenchmarkWorld:
    """The long-context benchmark's world: kind t (1..types) is one of its (verb, object) pairs (a seeded draw);
    ``obs_noise``: its observation noise in place of the config's. Call it on tokens for video features,
    ``(tokens (clips,), rng) -> (clips, video_dim)`` float32; :meth:`query_text` for a query's text features."""

    def __init__(self, types: int, obs_noise: float | None = None):
        synthetic = load_config(CONFIG)["data"]["synthetic"]
        if obs_noise is not None:
            synthetic["obs_noise"] = obs_noise
        p = _resolve_long_context({k: v for k, v in synthetic.items() if k != "generator"})
        pairs = [(v, o) for v in range(p["num_verbs"]) for o in range(p["num_objects"])]
        if types > len(pairs):
            raise ValueError(f"--types {types}: the benchmark's world has {len(pairs)} (verb, object) pairs")
        self.world, self.dim, self.text_dim = _World(p), p["video_dim"], p["text_dim"]
        _add_words(self.world, p)
        self.pairs = [pairs[i] for i in np.random.default_rng(p["seed"]).permutation(len(pairs))[:types]]

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        latent = _background_latent(self.world, len(tokens), rng)
        both = np.zeros(len(tokens), dtype=bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], tokens, [0]])))  # where the token changes
        for s, e in zip(edges[:-1], edges[1:]):
            if tokens[s]:
                _paint_event(self.world, latent, both, *self.pairs[tokens[s] - 1], int(s), int(e), rng)
        return self.world.render([latent], [rng.standard_normal((len(tokens), self.dim))])[0]

    def query_text(self, query: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
        """(kind, x, y) (y = 0: an ordinal) as the benchmark writes and encodes it: (words, text_dim) float32."""
        kind, x, y = query
        _, words = _query_text(self.world, KINDS[kind], self.pairs[x - 1], self.pairs[y - 1] if y else None, rng)
        return self.world.encode_query(words, rng)


class ProbeNet(nn.Module):
    """tokens (b, l) int64 or features (b, l, video_dim), query (b, 3) [, text (b, lt, text_dim), text mask (b, lt)]
    -> per-clip scores (b, l). With ``text_dim`` the query enters by its text through HieraMamba's query path (its
    ``text_encoder``, its cross-attention fusion before the mixer and again, same weights, after it) instead of the
    learned vectors and adaLN fusion."""

    def __init__(self, mixer: str, types: int, clips: int, task: str, video_dim: int | None = None,
                 text_dim: int | None = None, text_encoder: str = "identity"):
        super().__init__()
        self.task = task
        self.embed = nn.Embedding(types + 1, WIDTH) if video_dim is None else nn.Linear(video_dim, WIDTH)
        self.query_kind, self.query_x, self.query_y = (nn.Embedding(n, WIDTH) for n in (len(KINDS), types + 1,
                                                                                        types + 1))
        self.film = nn.Linear(WIDTH, 2 * WIDTH)  # built for both tasks: the mixer's initial weights follow them
        self.mixer = mixer
        if mixer == "amp":
            self.backbone = HieraMambaBackbone(in_dim=WIDTH, embd_dim=WIDTH, num_blocks=1, max_seq_len=clips,
                                               use_abs_pe=False, d_state=16, headdim=16, stride=1)
        else:
            count = 2 if mixer == "mamba1" else 1
            self.layers = nn.ModuleList(Mamba1(WIDTH, d_state=16) if mixer == "mamba1" else
                                        Hydra(WIDTH, d_state=16, headdim=16) for _ in range(count))
            self.norms = nn.ModuleList(RMSNorm(WIDTH) for _ in range(count))
        self.score = nn.Linear(WIDTH, 1)
        if text_dim is not None:  # the model's defaults at the long-context config's widths (text_embd_dim 32)
            cfg = HieraMambaConfig(embd_dim=WIDTH, text_dim=text_dim, text_embd_dim=WIDTH, text_encoder=text_encoder)
            self.text_net, self.fusion = build_text_encoder(cfg), build_fusion(cfg)

    def forward(self, inputs: torch.Tensor, query: torch.Tensor, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(inputs)
        if not inputs.is_floating_point():  # tokens: a learned vector per kind, plus noise
            x = x + 0.1 * torch.randn(*inputs.shape, WIDTH)
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
        if text is not None:
            text, text_mask = self.text_net(text, text_mask)
            x = self.fusion(x, mask, text, text_mask)
        elif self.task == "query":
            q = self.query_kind(query[:, 0]) + self.query_x(query[:, 1]) + self.query_y(query[:, 2])
            scale, shift = self.film(q).unsqueeze(1).chunk(2, -1)
            x = F.layer_norm(x, (WIDTH,)) * (1 + scale) + shift
        if self.mixer == "amp":
            x = self.backbone.encode(x, mask).feats[0]
        else:
            for layer, norm in zip(self.layers, self.norms):
                x = x + layer(norm(x), mask)
        if text is not None:
            x = self.fusion(x, mask, text, text_mask)
        return self.score(x).squeeze(-1)


class FullModel(nn.Module):
    """The whole HieraMamba of the long-context config on the probe's sequences: inputs (b, l) int64 tokens (one-hot,
    plus noise of std 0.1) or features (b, l, video_dim), text (b, lt, text_dim), text mask (b, lt) -> its SnAG
    batch; :meth:`loss` is the model's own, :meth:`picks` its top-1 moment and top clip."""

    def __init__(self, types: int, clips: int, text_dim: int, video_dim: int | None, text_encoder: str,
                 overrides: dict | None = None, detach: str | None = None, loss_norm_scale: float = 1.0,
                 init_levels: int | None = None):
        super().__init__()
        options = load_config(CONFIG)["model"]
        options = {**options, "video_dim": video_dim or types + 1, "text_dim": text_dim, "text_encoder": text_encoder,
                   "max_seq_len": max(options["max_seq_len"], clips), **(overrides or {})}
        self.types, name = types, options.pop("name")
        # --init-levels: the weights a model of that many levels draws first, in every module the two models share
        donor = create_model(name, **{**options, "num_blocks": init_levels}).state_dict() if init_levels else None
        self.model = create_model(name, **options)
        if donor:
            self.model.load_state_dict({k: v for k, v in donor.items() if k in self.model.state_dict()}, strict=False)
        if loss_norm_scale != 1.0:  # the normaliser counts that many times the positives, e.g. as a deeper pyramid
            update = self.model.loss_norm.update
            self.model.loss_norm.update = lambda count: update(loss_norm_scale * count)
        if detach == "anchors":  # block i > 0 reads block i - 1's anchors without sending its gradient back
            for block in self.model.backbone.blocks[1:]:
                block.register_forward_pre_hook(lambda _, args: (args[0].detach(), *args[1:]))
        if detach == "features":  # the heads read the fused levels > 0 detached: their loss trains only the heads
            self.model.head.register_forward_pre_hook(
                lambda _, args: ([args[0][0], *(f.detach() for f in args[0][1:])], *args[1:]))
        if detach == "outputs":  # the heads' outputs at levels > 0 detached: their loss trains nothing
            self.model.head.register_forward_hook(
                lambda _, args, out: tuple([level[0], *(x.detach() for x in level[1:])] for level in out))

    def batch(self, inputs, text, text_mask, answer=None, event: int = 0) -> dict:
        video = inputs if inputs.is_floating_point() else (F.one_hot(inputs, self.types + 1).float()
                                                           + 0.1 * torch.randn(*inputs.shape, self.types + 1))
        out = {"video": video, "video_mask": torch.ones(video.shape[:2], dtype=torch.bool), "text": text,
               "text_mask": text_mask, "query_index": torch.arange(len(video))}
        if answer is not None:  # clip c covers grid [c - 0.5, c + 0.5] (vidmamba.data.snag.seconds_to_grid)
            out["segments_grid"] = torch.stack([answer - 0.5, answer + event - 0.5], 1).float()
        return out

    def loss(self, inputs, answer, event: int, text, text_mask) -> torch.Tensor:
        return self.model(self.batch(inputs, text, text_mask, answer, event))["loss"]

    def picks(self, inputs, text, text_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """(top-1 moment (b, 2) in clips, [start, end), or (-1, -1) when none; the clip (b,) of the highest
        level-0 foreground probability)."""
        batch = self.batch(inputs, text, text_mask)
        batch["clip_offset"] = [0.5] * len(inputs)  # times = grid + 0.5 = clips
        rows = self.model.predict(batch)
        top1 = torch.tensor([r["pred_relevant_windows"][0][:2] if r["pred_relevant_windows"] else [-1.0, -1.0]
                             for r in rows])
        return top1, torch.stack([torch.tensor(r["pred_saliency_scores"]).argmax() for r in rows])


def score(span: torch.Tensor, answer: torch.Tensor, query: torch.Tensor, tokens: torch.Tensor, event: int,
          by_iou: bool, kinds: int) -> dict[str, list[float]]:
    """Top-1 picks span (n, 2) [start, end) in clips against answer starts (n,), queries (n, 3), tokens (n, l) ->
    per kind (``query[:, 0]`` < ``kinds``), in %: ``acc``, a hit on the answer, and ``x_found``, a hit on some copy
    of X (``query[:, 1]``). A hit: the span's first clip lies in the event, or (``by_iou``) IoU >= 0.5 with it."""
    def on(start):  # (n,) event starts -> (n,) bool
        if by_iou:
            return segment_iou(span.float(), torch.stack([start, start + event], 1).float()) >= 0.5
        return (span[:, 0] >= start) & (span[:, 0] < start + event)

    x_clip = tokens == query[:, 1:2]
    x_first = x_clip & ~F.pad(x_clip, (1, 0))[:, :-1]  # the first clip of each copy of X
    found = torch.zeros(len(tokens), dtype=torch.bool)
    for copy in range(int(x_first.sum(1).max())):  # the copy-th copy of X of every sequence that has one
        has = x_first.sum(1) > copy
        start = torch.where(has, x_first.cumsum(1).eq(copy + 1).int().argmax(1), -10 * event)
        found |= has & on(start)
    return {name: [round(100 * float(hit[query[:, 0] == k].float().mean()), 1) for k in range(kinds)]
            for name, hit in (("acc", on(answer)), ("x_found", found))}


def probe_loss(logits: torch.Tensor, answer: torch.Tensor, event: int, kind: str) -> torch.Tensor:
    """Scores (b, l), answer starts (b,) -> the probe's loss: ``softmax``, cross-entropy over positions (the answer's
    clips share the target), or ``focal``, HieraMamba's per-clip sigmoid focal loss with the model's defaults,
    summed and divided by the positives."""
    target = torch.zeros_like(logits)
    for i, s in enumerate(answer.tolist()):
        target[i, s:s + event] = 1
    if kind == "focal":
        cfg = HieraMambaConfig()
        return sigmoid_focal_loss(logits, target, cfg.focal_alpha, cfg.focal_gamma, cfg.label_smoothing,
                                  reduction="sum") / target.sum()
    return -(target / event * logits.log_softmax(1)).sum(1).mean()


def pool_batches(rng: np.random.Generator, size: int, batch: int):
    """Indices (batch,) into a training pool of ``size`` sequences: every epoch visits each once, in a fresh order
    (a batch may span two epochs)."""
    order: list[int] = []
    while True:
        while len(order) < batch:
            order.extend(rng.permutation(size).tolist())
        yield torch.tensor(order[:batch])
        del order[:batch]


def run(mixer: str, task: str, clips: int, seed: int, args) -> dict:
    """Train one probe; its learning curve and the step at which every kind first reaches 90 %."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    world = BenchmarkWorld(args.types, args.obs_noise) if args.inputs == "features" or args.query == "text" else None
    render = world if args.inputs == "features" else None
    full = mixer == "hieramamba"
    if full:
        net = FullModel(args.types, clips, world.text_dim, render.dim if render else None, args.text_encoder,
                        args.model, args.detach, args.loss_norm_scale, args.init_levels)
    else:
        net = ProbeNet(mixer, args.types, clips, task, render.dim if render else None,
                       world.text_dim if args.query == "text" else None, args.text_encoder)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)

    def batch(n):  # (inputs, answer, query, tokens [, text, text mask])
        seqs = [(tokens, answer, query, tokens) for tokens, answer, query in
                (sample(rng, task, clips, args.sep, args.event, args.types) for _ in range(n))]
        if render:
            seqs = [(render(tokens, rng), *rest) for tokens, *rest in seqs]
        cols = tuple(torch.tensor(np.array(col)) for col in zip(*seqs))
        if args.query == "text":  # + text (n, lt, text_dim) zero-padded, text mask (n, lt)
            texts = [torch.from_numpy(world.query_text(q, rng)) for _, _, q, _ in seqs]
            cols += (nn.utils.rnn.pad_sequence(texts, batch_first=True),
                     nn.utils.rnn.pad_sequence([torch.ones(len(t), dtype=torch.bool) for t in texts], batch_first=True))
        return cols

    pool = batch(args.train_pool) if args.train_pool else None  # --train-pool: a finite training set
    visits = pool_batches(rng, args.train_pool, args.batch) if pool else None

    def training_batch():
        if pool is None:
            return batch(args.batch)
        take = next(visits)
        return tuple(col[take] for col in pool)

    def evaluate(inputs, answer, query, tokens, *text) -> dict[str, list[float]]:
        net.eval()
        with torch.no_grad():
            if full:
                span, top = net.picks(inputs, *text)
            else:
                top = net(inputs, query, *text).argmax(1)
        net.train()
        kinds = len(KINDS) if task == "query" else 1
        by_clip = score(torch.stack([top, top + 1], 1), answer, query, tokens, args.event, by_iou=False, kinds=kinds)
        if not full:
            return by_clip
        return {**score(span, answer, query, tokens, args.event, by_iou=True, kinds=kinds),
                **{f"{name}_clip": value for name, value in by_clip.items()}}

    curve, steps_to_90, started = [], None, time.process_time()
    for step in range(1, args.steps + 1):
        inputs, answer, query, _, *text = training_batch()
        if full:
            loss = net.loss(inputs, answer, args.event, *text)
        else:
            loss = probe_loss(net(inputs, query, *text), answer, args.event, args.loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0:
            scores = evaluate(*batch(EVAL_SEQUENCES))
            acc = scores["acc"]
            curve.append({"step": step, "loss": round(loss.item(), 3), **scores})
            if pool is not None:  # the same score on the first sequences of the training set
                curve[-1]["train_acc"] = evaluate(*(col[:EVAL_SEQUENCES] for col in pool))["acc"]
            print(json.dumps({"mixer": mixer, "seed": seed, **curve[-1]}), file=sys.stderr, flush=True)
            if steps_to_90 is None and min(acc) >= 90:
                steps_to_90 = step
    return {"mixer": mixer, "task": task, "loss": "model" if full else args.loss, "inputs": args.inputs,
            "obs_noise": render.world.p["obs_noise"] if render else None, "query": args.query,
            "text_encoder": args.text_encoder if args.query == "text" else None,
            "train_pool": args.train_pool, "model": args.model if full else None,
            "detach": args.detach if full else None, "loss_norm_scale": args.loss_norm_scale if full else None,
            "init_levels": args.init_levels if full else None,
            "clips": clips, "seed": seed,
            "kinds": list(KINDS) if task == "query" else ["first_after"], "final_acc": curve[-1]["acc"],
            "steps_to_90": steps_to_90, "cpu_s": round(time.process_time() - started, 1), "curve": curve}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=("fixed", "query"), default="query")
    ap.add_argument("--mixers", nargs="+", choices=("mamba1", "hydra", "amp", "hieramamba"), default=["hydra", "amp"],
                    help="hieramamba: the whole model of the long-context config, trained with its own loss "
                    "(needs --query text; --loss does not apply)")
    ap.add_argument("--clips", nargs="+", type=int, default=[1024], help="sequence lengths")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--sep", type=int, default=64, help="event starts lie on multiples of this many clips")
    ap.add_argument("--event", type=int, default=4, help="clips per event")
    ap.add_argument("--types", type=int, default=8, help="event kinds (X, Y and distractors are drawn from them)")
    ap.add_argument("--loss", choices=("softmax", "focal"), default="softmax",
                    help="softmax: cross-entropy over positions; focal: HieraMamba's per-clip sigmoid focal loss")
    ap.add_argument("--inputs", choices=("tokens", "features"), default="tokens",
                    help="tokens: a learned vector per event kind; features: the long-context benchmark's rendered "
                    "video features")
    ap.add_argument("--obs-noise", type=float, help="--inputs features: the observation noise (default: the config's)")
    ap.add_argument("--query", choices=("learned", "text"), default="learned",
                    help="--task query: learned: a vector per kind, X and Y, fused by adaLN; text: the benchmark's "
                    "query text and HieraMamba's query path (text encoder, cross-attention fusion)")
    ap.add_argument("--text-encoder", choices=("identity", "transformer"), default="identity",
                    help="--query text: HieraMamba's text encoder; identity: the long-context config's (Ego4D, MAD: "
                    "a 1x1 projection, no mixing across words); transformer: TACoS's (positions, 5 self-attention "
                    "layers)")
    ap.add_argument("--train-pool", type=int, help="train on this many sequences, drawn once and visited every "
                    "epoch in a fresh order (default: fresh sequences every step); the curve adds their score")
    ap.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE",
                    help="--mixers hieramamba: model config values in place of the long-context config's (YAML "
                    "values, e.g. num_blocks=1)")
    ap.add_argument("--detach", choices=("anchors", "features", "outputs"),
                    help="--mixers hieramamba: stop a gradient of the pyramid's levels > 0. anchors: block i > 0 reads "
                    "block i - 1's anchors detached (no gradient into the blocks below it; the fusion, text encoder "
                    "and heads still learn from every level); features: the heads read the fused levels > 0 "
                    "detached (their loss trains only the heads); outputs: the heads' outputs there detached (their "
                    "loss trains nothing)")
    ap.add_argument("--loss-norm-scale", type=float, default=1.0,
                    help="--mixers hieramamba: the loss normaliser counts this many times the positive points (2: a "
                    "one-level model divides its loss as a two-level one does, whose level 1 doubles the positives of "
                    "the probe's 4-clip events)")
    ap.add_argument("--init-levels", type=int, help="--mixers hieramamba: start from the weights that a model of "
                    "this many levels draws with the same seed, in every module the two share")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    try:  # the config's own override syntax and YAML values
        args.model = {".".join(path): value for path, value in map(parse_override, args.model)}
    except ValueError as err:
        ap.error(f"--model: {err}")
    if min(len(range(0, n - args.event, args.sep)) for n in args.clips) < 9:
        ap.error("every --clips needs room for 9 event starts (6 copies of X, Y, 2 distractors) every --sep clips")
    if args.train_pool is not None and args.train_pool < args.batch:
        ap.error(f"--train-pool must hold at least one batch ({args.batch} sequences), got {args.train_pool}")
    if args.query == "text" and args.task != "query":
        ap.error("--query text needs --task query")
    if "hieramamba" in args.mixers and args.query != "text":
        ap.error("--mixers hieramamba reads the query as the model does: it needs --task query --query text")
    if ((args.model or args.detach or args.loss_norm_scale != 1.0 or args.init_levels is not None)
            and "hieramamba" not in args.mixers):
        ap.error("--model, --detach, --loss-norm-scale and --init-levels set --mixers hieramamba")
    if args.init_levels is not None and args.init_levels < 1:
        ap.error(f"--init-levels must be >= 1, got {args.init_levels}")
    if args.loss_norm_scale <= 0:
        ap.error(f"--loss-norm-scale must be > 0, got {args.loss_norm_scale}")
    if args.model:
        options = load_config(CONFIG)["model"]
        try:
            model_config(options.pop("name"), **{**options, **args.model})  # checked, no weights built
        except ValueError as err:
            ap.error(f"--model: {err}")
    if args.inputs == "features" or args.query == "text":
        try:
            BenchmarkWorld(args.types, args.obs_noise)
        except ValueError as err:
            ap.error(str(err))
    torch.set_num_threads(1)
    loadavg_start = os.getloadavg()
    rows = [run(m, args.task, n, s, args) for n in args.clips for m in args.mixers for s in args.seeds]
    print_and_write_json({
        "benchmark": "context_probe", "command": "python benchmarks/context_probe.py " + " ".join(sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": 1, "torch": torch.__version__,
                    "loadavg_start": loadavg_start, "loadavg_end": os.getloadavg()},
        "rows": rows}, args.out)


if __name__ == "__main__":
    main()
