"""TVSum highlight detection (top-5 mAP, UMT protocol), one model per domain, every video the val video once.

Data: ``../shared/data/tvsum_umt`` (UMT layout: I3D rgb + flow 2048-d per 2-s clip, CLIP title tokens 512-d, 20
annotator scores per clip). Split: ``tvsum_domain_splits.json`` gives 4 train / 1 val video per domain. Here each domain's
5 videos are rotated: rotation r holds video r out as the val video and trains on the other 4 (rotation 0 is the
standard split), so 50 val videos are scored instead of 10. Metric: :func:`vidmamba.metrics.highlight.tvsum_map`
(each annotator binarised at its median, top-5 clips by predicted score, trapezoid AP, mean over annotators).

Two protocols, both reported:

* **honest** (headline): each val video is scored once. The epoch count and the clip score (one of ``SCORE_PARTS``) are
  picked from ``--epochs`` by leave-one-video-out (LOVO) cross-validation over that rotation's 4 training videos only
  (train on 3, score the 4th); the pick is the (score, grid epoch) with the best LOVO mAP averaged over the folds of
  rotation r of all 10 domains (40 folds; a per-domain epoch pick is reported as a variant). A LOVO model trained on 3
  of a domain's 5 videos serves both rotations whose val video is one of the 2 it did not see (scored on the other),
  so a domain needs 10 LOVO models, not 20. Every other hyper-parameter is fixed in ``MODEL_CFG`` / ``TRAIN_CFG`` /
  ``VARIANTS`` below. The final models (one per domain, rotation and seed, trained on the rotation's 4 training
  videos) are scored on its val video at the picked epoch. LOVO models are trained with the first seed only.
* **paper** (comparison only): the best epoch on the val video, as UMT, QD-DETR, UniVTG and MLVTG select.

Rows (``VARIANTS``): MLVTG ("mlvtg", MambaAligner), its transformer twin ("mlvtg-transformer"), the per-clip model
("mlvtg-perclip", no temporal context), each also with the aligned clips shaping the highlight score ("-post-reg":
``post_saliency`` plus ``w_sal_reg``, a regression of the score to the per-video standardised mean annotator score),
MLVTG with that target on the pre-aligner score only ("mlvtg-reg", the control) and with ``post_saliency`` plus the
pairwise ranking loss ("mlvtg-post-rank", not in the default rows); a closed-form ridge regression
from the clip features to the mean annotator score (lambda by LOVO on the training videos; paper protocol: lambda
picked on the val video), a random ranking (honest: expectation over ``RANDOM_DRAWS`` permutations; paper: best of as
many random rankings as the models have evaluated epochs, and best of 1000) and annotator agreement (for each
annotator, the mean of the other 19 annotators as the prediction, scored by the metric against the held-out one).

Training target: ``saliency`` = mean annotator score (drives UniVTG's intra-video saliency InfoNCE, and the graded
losses of the post-saliency rows), ``foreground`` = clips whose mean score is above the video's median (drives the fg
BCE of the TL branch); TVSum has no windows, so the span losses are weighted 0. Clips are ranked by the LOVO-picked
score: ``model.scores`` ("add": fg probability + HD saliency, UniVTG's eval mode), the HD saliency alone, or the fg
probability alone.

    python benchmarks/tvsum.py --workers 1              # full run, writes benchmarks/results_tvsum.json
    python benchmarks/tvsum.py --quick                  # 3 domains, 1 seed, short grid
    python benchmarks/tvsum.py --models mlvtg --seeds 0 --cache /tmp/jobs.jsonl --out /tmp/r.json
    python benchmarks/tvsum.py --render benchmarks/results_tvsum.json   # the markdown table of a results file

``--cache FILE`` appends every finished training job to FILE (JSON lines) and skips the jobs already there, so a run
can be extended (more seeds, more rows) or resumed; a job is identified by everything that defines it.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "tvsum_umt"
DEFAULT_OUT = REPO / "benchmarks" / "results_tvsum.json"

#: small CPU model (hidden 128, 2 aligner blocks); TVSum has no windows, so span / GIoU losses are off.
MODEL_CFG = dict(video_dim=2048, text_dim=512, hidden_dim=128, num_layers=2, d_state=16, d_conv=4, expand=2,
                 dropout=0.1, input_dropout=0.5, drop_path=0.1, n_heads=8, mlp_ratio=4.0,
                 fg_loss="bce", bg_weight=1.0, w_fg=1.0, w_span=0.0, w_giou=0.0,
                 w_sal_intra=1.0, w_sal_inter=0.0, tau=0.07, score_mode="add")
#: rows: name -> (registered model, MODEL_CFG overrides). "-post-reg": the aligned clips shape the highlight score
#: (post_saliency) and the score regresses the standardised mean annotator score (w_sal_reg); "-reg": the same target
#: on the pre-aligner HD score only (the control); "-post-rank": post_saliency with the pairwise ranking loss.
POST_REG = {"post_saliency": True, "w_sal_reg": 1.0}
VARIANTS = {
    "mlvtg": ("mlvtg", {}),
    "mlvtg-post-reg": ("mlvtg", POST_REG),
    "mlvtg-reg": ("mlvtg", {"w_sal_reg": 1.0}),
    "mlvtg-post-rank": ("mlvtg", {"post_saliency": True, "w_sal_rank": 1.0}),
    "mlvtg-transformer": ("mlvtg-transformer", {}),
    "mlvtg-transformer-post-reg": ("mlvtg-transformer", POST_REG),
    "mlvtg-perclip": ("mlvtg-perclip", {}),
    "mlvtg-perclip-post-reg": ("mlvtg-perclip", POST_REG),
}
DEFAULT_MODELS = ("mlvtg", "mlvtg-post-reg", "mlvtg-reg", "mlvtg-transformer", "mlvtg-transformer-post-reg",
                  "mlvtg-perclip", "mlvtg-perclip-post-reg")
#: optimisation, fixed beforehand: AdamW, constant lr, one video per step, every training video once per epoch.
TRAIN_CFG = dict(lr=1e-3, weight_decay=1e-4, batch_size=1, grad_clip=1.0)
DEFAULT_EPOCHS = (2, 4, 6, 8, 10)
DEFAULT_SEEDS = (0, 1, 2)
RIDGE_LAMBDAS = tuple(float(x) for x in np.logspace(-3, 3, 13))
RANDOM_DRAWS = 1000
#: per-clip scores a model is ranked by; the honest protocol picks one with the epoch by LOVO: "add" (fg prob +
#: saliency, UniVTG's eval mode), "saliency" (the HD output alone), "fg" (the fg probability alone)
SCORE_PARTS = ("add", "saliency", "fg")


# ---------------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------------
def load_data(root, domains=None) -> dict:
    """{domain: [item, ...]}: the domain's standard val video first, then its train videos; an item is a
    TVSumUMTDataset sample (features L2-normalised per stream; ``foreground``: mean score above the video's median)."""
    from vidmamba.data.tvsum_umt import TVSumUMTDataset, read_tvsum_domain_splits
    splits = read_tvsum_domain_splits(root)
    out = {}
    for domain in (domains or sorted(splits)):
        out[domain] = []
        for part in ("val", "train"):
            ds = TVSumUMTDataset(root, domain, part, normalize=True)
            for i in range(len(ds)):
                it = ds[i]
                it["video"] = it["video"].float()
                out[domain].append(it)
    return out


def lovo_folds(n: int) -> list[tuple[list[int], int]]:
    """Leave-one-video-out folds over ``n`` training videos: [(train indices, held-out index), ...]."""
    if n < 2:
        raise ValueError(f"leave-one-out needs at least 2 videos, got {n}")
    return [([j for j in range(n) if j != k], k) for k in range(n)]


def score_map(preds, items) -> float:
    """TVSum top-5 mAP in percent of per-video predictions against the items' 20 annotator columns."""
    from vidmamba.metrics.highlight import tvsum_map
    return 100.0 * tvsum_map([np.asarray(p, dtype=np.float64) for p in preds],
                             [it["saliency_annotators"].numpy() for it in items])[0]


# ---------------------------------------------------------------------------------------------------------------------
# closed-form baselines
# ---------------------------------------------------------------------------------------------------------------------
def ridge_fit(X, y, lam: float):
    """Ridge regression with an unpenalised intercept, closed form: ``(w, b)`` minimising
    ``|X w + b - y|^2 + lam |w|^2``. Solved in the dual (``n x n``) when there are fewer samples than features."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx, my = X.mean(0), y.mean()
    Xc, yc = X - mx, y - my
    n, d = Xc.shape
    if n < d:
        w = Xc.T @ np.linalg.solve(Xc @ Xc.T + lam * np.eye(n), yc)
    else:
        w = np.linalg.solve(Xc.T @ Xc + lam * np.eye(d), Xc.T @ yc)
    return w, float(my - mx @ w)


def _ridge_xy(items):
    X = np.concatenate([it["video"].numpy() for it in items]).astype(np.float64)
    y = np.concatenate([it["saliency"].numpy() for it in items]).astype(np.float64)
    return X, y


def ridge_predict(train_items, test_items, lam):
    w, b = ridge_fit(*_ridge_xy(train_items), lam)
    return [it["video"].numpy().astype(np.float64) @ w + b for it in test_items]


def ridge_domain(train, val, lambdas=RIDGE_LAMBDAS) -> dict:
    """Ridge on one domain: LOVO mAP per lambda on the train videos, val mAP per lambda, the honest and paper picks."""
    cv = []
    for lam in lambdas:
        preds = [ridge_predict([train[j] for j in tr], [train[k]], lam)[0] for tr, k in lovo_folds(len(train))]
        cv.append(score_map(preds, [train[k] for _, k in lovo_folds(len(train))]))
    val_curve = [score_map(ridge_predict(train, val, lam), val) for lam in lambdas]
    return {"lambdas": list(lambdas), "cv": cv, "val": val_curve}


def random_domain(val, rng, n_draws=RANDOM_DRAWS) -> np.ndarray:
    """mAP of ``n_draws`` uniformly random rankings of the val video(s)."""
    return np.array([score_map([rng.permutation(it["saliency"].shape[0]).astype(np.float64) for it in val], val)
                     for _ in range(n_draws)])


def annotator_agreement(items) -> float:
    """Human agreement under the metric: for each video and annotator a, the prediction is the mean score of the other
    19 annotators and the labels are annotator a's column (binarised at its median by :func:`tvsum_map`); mean over
    annotators and videos, in percent."""
    from vidmamba.metrics.highlight import tvsum_map
    aps = []
    for it in items:
        lab = it["saliency_annotators"].numpy().astype(np.float64)
        for a in range(lab.shape[1]):
            aps.append(tvsum_map([np.delete(lab, a, axis=1).mean(1)], [lab[:, a:a + 1]])[0])
    return 100.0 * float(np.mean(aps))


# ---------------------------------------------------------------------------------------------------------------------
# model training (one job = one model trained on some videos, scored every epoch on held-out videos)
# ---------------------------------------------------------------------------------------------------------------------
_DATA: dict = {}


def _worker_init(data, threads):
    import torch
    torch.set_num_threads(threads)
    _DATA.clear()
    _DATA.update(data)


def _batch(items):
    from vidmamba.data.tvsum_umt import TVSumUMTDataset
    keys = ("video", "text", "saliency", "foreground", "windows", "windows_norm", "clip_length", "duration", "vid")
    b = TVSumUMTDataset.collate([{k: it[k] for k in keys} for it in items])
    b["foreground"] = b["foreground"] & b["video_mask"]
    return b


def train_job(job: dict) -> dict:
    """Train variant ``job["model"]`` on videos ``job["train"]`` of ``job["domain"]`` for ``job["epochs"]`` epochs;
    after every epoch score each video of ``job["eval"]`` (per-video mAP of each of ``SCORE_PARTS``)."""
    import torch
    from vidmamba.models import create_model
    t0 = time.time()
    videos = _DATA[job["domain"]]
    train = [videos[i] for i in job["train"]]
    evals = [videos[i] for i in job["eval"]]
    torch.manual_seed(job["seed"])
    rng = np.random.default_rng(job["seed"])
    model = create_model(VARIANTS[job["model"]][0], **job["cfg"])
    tc = job["train_cfg"]
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    eval_batches = [_batch([it]) for it in evals]
    bs = tc["batch_size"]
    curves = {p: [[] for _ in evals] for p in SCORE_PARTS}        # part -> eval video -> per-epoch mAP
    losses_per_epoch = []
    for _ in range(job["epochs"]):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for s in range(0, len(order), bs):
            out = model(_batch([train[i] for i in order[s:s + bs]]))
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            if tc["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
            opt.step()
            losses.append(float(out["loss"].detach()))
        losses_per_epoch.append(float(np.mean(losses)))
        model.eval()
        with torch.no_grad():
            for v, (b, it) in enumerate(zip(eval_batches, evals)):
                out = model.encode(b)
                preds = {"add": model.scores(out)[0], "saliency": out["saliency"][0],
                         "fg": torch.sigmoid(out["logits"])[0]}
                for p in SCORE_PARTS:
                    curves[p][v].append(score_map([preds[p].numpy()], [it]))
    return {**{k: job[k] for k in ("domain", "model", "kind", "train", "eval", "seed")}, "curves": curves,
            "loss": losses_per_epoch, "seconds": time.time() - t0}


def make_jobs(data, models, seeds, max_epoch, model_cfg=MODEL_CFG, train_cfg=TRAIN_CFG) -> list[dict]:
    """Per domain and variant: LOVO jobs (every subset of n - 2 of the domain's n videos, seed ``seeds[0]``, scored on
    the 2 others) and final jobs (every rotation: all videos but one, scored on that one; one per seed). Model-major
    order, so that with ``--cache`` an interrupted run leaves whole rows done."""
    jobs = []
    for model in models:
        for domain, videos in data.items():
            n = len(videos)
            base = dict(domain=domain, model=model, cfg={**model_cfg, **VARIANTS[model][1]}, train_cfg=train_cfg,
                        epochs=max_epoch)
            for train in itertools.combinations(range(n), n - 2):
                jobs.append(dict(base, kind="cv", seed=seeds[0], train=list(train),
                                 eval=[i for i in range(n) if i not in train]))
            for seed in seeds:
                for tr, val in lovo_folds(n):
                    jobs.append(dict(base, kind="final", seed=seed, train=tr, eval=[val]))
    return jobs


def job_key(job: dict) -> str:
    """Everything that defines a training job, as a string (the ``--cache`` key)."""
    return json.dumps({k: job[k] for k in ("domain", "model", "cfg", "train_cfg", "epochs", "kind", "seed", "train",
                                           "eval")}, sort_keys=True)


def run_jobs(jobs, data, workers, threads, log, cache=None) -> list[dict]:
    """Run ``jobs`` (``workers`` processes of ``threads`` torch threads); with ``cache`` (a JSON-lines path) reuse the
    jobs found there and append each newly finished one."""
    done = {}
    if cache and Path(cache).is_file():
        for line in Path(cache).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["key"]] = rec["result"]
    results = [done[job_key(j)] for j in jobs if job_key(j) in done]
    todo = [j for j in jobs if job_key(j) not in done]
    log(f"{len(jobs)} training jobs, {len(results)} from the cache, {len(todo)} to run "
        f"({workers} workers x {threads} threads)")

    def finish(job, r):
        results.append(r)
        if cache:
            with open(cache, "a") as f:
                f.write(json.dumps({"key": job_key(job), "result": r}) + "\n")
        log(f"[{len(results)}/{len(jobs)}] {r['model']} {r['domain']} {r['kind']} train {r['train']} seed {r['seed']}"
            f" {r['seconds']:.1f}s")

    if workers <= 1:
        _worker_init(data, threads)
        for j in todo:
            finish(j, train_job(j))
        return results
    ctx = mp.get_context("fork")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(data, threads)) as ex:
        futs = {ex.submit(train_job, j): j for j in todo}
        for f in cf.as_completed(futs):
            finish(futs[f], f.result())
    return results


# ---------------------------------------------------------------------------------------------------------------------
# protocols and summary
# ---------------------------------------------------------------------------------------------------------------------
def _mean_std(values) -> dict:
    v = [float(x) for x in values]
    return {"mean": float(np.mean(v)), "std": float(statistics.stdev(v)) if len(v) > 1 else 0.0, "n": len(v)}


def pick_epoch(cv_curves: np.ndarray, grid) -> int:
    """The grid epoch (1-based) with the best mean CV mAP; ``cv_curves`` is (n, max_epoch). Ties: the earliest."""
    means = cv_curves.mean(0)
    scores = [means[e - 1] for e in grid]
    return int(grid[int(np.argmax(scores))])


def rotation_cv(results, domain, val) -> dict:
    """The LOVO curves of the rotation whose val video is ``val``: {part: (folds, epochs)}, from the CV jobs that did
    not train on ``val``, each scored on its other held-out video."""
    rs = [r for r in results if r["domain"] == domain and r["kind"] == "cv" and val in r["eval"]]
    return {p: np.array([r["curves"][p][i] for r in rs for i, v in enumerate(r["eval"]) if v != val])
            for p in SCORE_PARTS}


def summarise_model(results, model, domains, n_videos, seeds, grid) -> dict:
    """Honest pick per rotation r of the clip score (one of SCORE_PARTS) and the epoch: the pair with the best mean
    LOVO mAP over rotation r's folds of all domains; each val video scored at its rotation's pick."""
    rs = [r for r in results if r["model"] == model]
    cv = {(d, v): rotation_cv(rs, d, v) for d in domains for v in range(n_videos)}
    final = {(r["domain"], r["eval"][0], r["seed"]): r["curves"] for r in rs if r["kind"] == "final"}
    picks = []
    for v in range(n_videos):
        folds = {p: np.concatenate([cv[(d, v)][p] for d in domains]) for p in SCORE_PARTS}
        best = {p: max(folds[p].mean(0)[e - 1] for e in grid) for p in SCORE_PARTS}
        part = max(SCORE_PARTS, key=lambda p: best[p])            # ties: the first listed ("add")
        picks.append({"score": part, "epoch": pick_epoch(folds[part], grid),
                      "cv_best_per_score": {p: float(x) for p, x in best.items()},
                      "per_domain_epoch": {d: pick_epoch(cv[(d, v)][part], grid) for d in domains}})

    def table(value, rotations=range(n_videos)):
        """value(domain, video, seed) -> mAP; per-domain means over rotations and seeds, mean +- std over seeds of
        the mean over all val videos."""
        per_seed = {s: {d: [value(d, v, s) for v in rotations] for d in domains} for s in seeds}
        return {"per_domain": {d: _mean_std([np.mean(per_seed[s][d]) for s in seeds]) for d in domains},
                "per_seed_mean": {str(s): float(np.mean(list(per_seed[s].values()))) for s in seeds},
                "mean": _mean_std([np.mean(list(per_seed[s].values())) for s in seeds])}

    def at(part_of, epoch_of):
        return lambda d, v, s: final[(d, v, s)][part_of(v)][0][epoch_of(d, v) - 1]

    honest_value = at(lambda v: picks[v]["score"], lambda d, v: picks[v]["epoch"])
    return {
        "honest": table(honest_value),
        "honest_per_video": {d: [float(np.mean([honest_value(d, v, s) for s in seeds])) for v in range(n_videos)]
                             for d in domains},
        "picks": picks,
        "honest_standard_split": table(honest_value, rotations=[0])["mean"],
        "honest_per_domain_epoch": table(at(lambda v: picks[v]["score"],
                                            lambda d, v: picks[v]["per_domain_epoch"][d]))["mean"],
        "honest_score_parts": {p: table(at(lambda v, p=p: p, lambda d, v: picks[v]["epoch"]))["mean"]
                               for p in SCORE_PARTS},
        "paper": table(lambda d, v, s: max(final[(d, v, s)][picks[v]["score"]][0])),
        "last_epoch": table(lambda d, v, s: final[(d, v, s)][picks[v]["score"]][0][-1])["mean"],
        "cv_curve_mean": {p: [float(x) for x in np.concatenate([cv[k][p] for k in cv]).mean(0)] for p in SCORE_PARTS},
        "val_curve_mean": {p: [float(x) for x in np.mean([c[p][0] for c in final.values()], 0)] for p in SCORE_PARTS},
        "train_seconds": float(sum(r["seconds"] for r in rs)),
    }


def render_markdown(result: dict) -> str:
    """The per-domain table of a results JSON as markdown (honest and paper-protocol rows per model)."""
    doms = result["config"]["domains"]
    pd, sm = result["per_domain"], result["summary"]
    n_eval = max(result["config"]["epoch_grid"])
    rows = []
    for m, ms in result["models"].items():
        pick = ", ".join(f"{p['score']} {p['epoch']}" for p in ms["picks"])        # by rotation
        for proto in ("honest", "paper"):
            t = ms[proto]
            mean = f"{t['mean']['mean']:.1f} ± {t['mean']['std']:.1f}"
            rows.append((f"{m} ({proto}" + (f"; picks: {pick})" if proto == "honest" else ")"),
                         [f"{t['per_domain'][d]['mean']:.1f}" for d in doms],
                         f"**{mean}**" if proto == "honest" else mean))
    rows.append(("ridge (honest, λ by LOVO)", [f"{pd['ridge']['honest'][d]:.1f}" for d in doms],
                 f"**{sm['ridge']['honest']:.1f}**"))
    rows.append(("ridge (paper, λ on val)", [f"{pd['ridge']['paper'][d]:.1f}" for d in doms],
                 f"{sm['ridge']['paper']:.1f}"))
    rows.append(("random (expectation)", [f"{pd['random']['honest'][d]:.1f}" for d in doms],
                 f"{sm['random']['honest']:.1f} ± {sm['random']['honest_std_over_draws']:.1f}"))
    rows.append((f"random (paper: best of {n_eval} on val)",
                 [f"{pd['random'][f'paper_best_of_{n_eval}'][d]:.1f}" for d in doms],
                 f"{sm['random'][f'paper_best_of_{n_eval}']:.1f}"))
    rows.append(("annotator agreement", [f"{pd['annotator_agreement'][d]:.1f}" for d in doms],
                 f"{sm['annotator_agreement']:.1f}"))
    out = ["| row | " + " | ".join(doms) + " | mean |", "|---|" + "---:|" * (len(doms) + 1)]
    out += [f"| {name} | " + " | ".join(cells) + f" | {mean} |" for name, cells, mean in rows]
    return "\n".join(out)


def baselines(data, n_eval) -> dict:
    """Closed-form rows per domain, each a mean over the domain's rotations (val videos): ridge (honest: lambda by
    LOVO on the rotation's train videos; paper: lambda picked on the val video), random rankings, annotator
    agreement."""
    rng = np.random.default_rng(0)
    out = {"ridge": {"honest": {}, "paper": {}, "cv": {}, "val": {}}, "random": {}, "annotator_agreement": {}}
    rand = {}
    for d, videos in data.items():
        rot = [ridge_domain([videos[i] for i in tr], [videos[v]]) for tr, v in lovo_folds(len(videos))]
        out["ridge"]["cv"][d], out["ridge"]["val"][d] = [r["cv"] for r in rot], [r["val"] for r in rot]
        out["ridge"]["honest"][d] = float(np.mean([r["val"][int(np.argmax(r["cv"]))] for r in rot]))
        out["ridge"]["paper"][d] = float(np.mean([max(r["val"]) for r in rot]))
        rand[d] = np.array([random_domain([it], rng) for it in videos])           # (videos, draws)
        out["annotator_agreement"][d] = annotator_agreement(videos)
    domains = list(data)
    draw_means = np.mean([rand[d].mean(0) for d in domains], 0)                  # (draws,) mean over all val videos

    def best_of(d, k):
        """Expected mean over the domain's videos when each keeps the best of k random rankings (k-draw blocks)."""
        return float(np.mean([rand[d][:, b * k:(b + 1) * k].max(1).mean() for b in range(RANDOM_DRAWS // k)]))

    out["random"] = {"honest": {d: float(rand[d].mean()) for d in domains},
                     f"paper_best_of_{n_eval}": {d: best_of(d, n_eval) for d in domains},
                     f"paper_best_of_{RANDOM_DRAWS}": {d: best_of(d, RANDOM_DRAWS) for d in domains},
                     "honest_std_over_draws": float(draw_means.std())}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=str(DEFAULT_ROOT))
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    p.add_argument("--epochs", type=int, nargs="+", default=list(DEFAULT_EPOCHS),
                   help="epoch grid for the LOVO pick; models train to its maximum")
    p.add_argument("--domains", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(VARIANTS))
    p.add_argument("--quick", action="store_true", help="3 domains, 1 seed, epochs 2 4")
    p.add_argument("--workers", type=int, default=1, help="training processes")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (1 is far faster than 2 when the 2 cores are shared)")
    p.add_argument("--cache", default=None, help="JSON-lines file of finished training jobs: reused and appended")
    p.add_argument("--out", default=None, help=f"JSON output path (default {DEFAULT_OUT}; none with --quick)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override MODEL_CFG / TRAIN_CFG, e.g. --set model.w_sal_rank=0.5 --set train.lr=3e-4")
    p.add_argument("--render", metavar="JSON", help="print the markdown table of an existing results file and exit")
    args = p.parse_args(argv)
    if args.render:
        print(render_markdown(json.loads(Path(args.render).read_text())))
        return None
    if args.quick:
        args.domains = args.domains or ["BK", "GA", "VT"]
        args.seeds, args.epochs = args.seeds[:1], [2, 4]
    grid = sorted(set(args.epochs))
    from vidmamba.config import apply_overrides
    cfgs = apply_overrides({"model": MODEL_CFG, "train": TRAIN_CFG}, args.set, "benchmarks/tvsum.py --set")
    out_path = args.out or (None if args.quick else str(DEFAULT_OUT))

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.time()
    load_start = os.getloadavg()
    import torch
    torch.set_num_threads(args.threads)
    data = load_data(args.root, args.domains)
    domains = list(data)
    n_videos = min(len(v) for v in data.values())
    if any(len(v) != n_videos for v in data.values()):
        raise ValueError(f"every domain needs the same number of videos, got { {d: len(v) for d, v in data.items()} }")

    base = baselines(data, max(grid))
    t_base = time.time() - t0
    log(f"baselines done in {t_base:.1f}s: ridge honest {np.mean(list(base['ridge']['honest'].values())):.2f}")

    jobs = make_jobs(data, args.models, args.seeds, max(grid), cfgs["model"], cfgs["train"])
    t_train = time.time()
    results = run_jobs(jobs, data, args.workers, args.threads, log, args.cache)
    train_wall = time.time() - t_train
    models = {m: summarise_model(results, m, domains, n_videos, args.seeds, grid) for m in args.models}

    def dmean(x):
        return float(np.mean(list(x.values())))

    summary = {m: {k: s[k]["mean"] for k in ("honest", "paper")} | {
        k: s[k] for k in ("honest_standard_split", "honest_per_domain_epoch", "last_epoch")} for m, s in models.items()}
    summary["ridge"] = {k: dmean(base["ridge"][k]) for k in ("honest", "paper")}
    summary["random"] = {k: (dmean(v) if isinstance(v, dict) else v) for k, v in base["random"].items()}
    summary["annotator_agreement"] = dmean(base["annotator_agreement"])
    result = {
        "benchmark": "tvsum_top5_map_rotations",
        "protocols": {
            "honest": "per rotation (val video): score and epoch = the grid pair with the best leave-one-video-out mAP "
                      "over that rotation's 4 train videos (mean over rotation r's folds of all domains); each val "
                      "video scored once; mean +- sample std over seeds of the mean over all val videos",
            "paper": "best epoch on the val video (per val video and seed), as UMT / QD-DETR / UniVTG / MLVTG select",
        },
        "summary": summary,
        "per_domain": {
            **{m: {k: {d: s[k]["per_domain"][d]["mean"] for d in domains} for k in ("honest", "paper")}
               for m, s in models.items()},
            "ridge": {k: base["ridge"][k] for k in ("honest", "paper")},
            "random": {k: v for k, v in base["random"].items() if isinstance(v, dict)},
            "annotator_agreement": base["annotator_agreement"],
        },
        "models": models,
        "ridge": {k: base["ridge"][k] for k in ("cv", "val")},
        "config": {"model": cfgs["model"], "train": cfgs["train"],
                   "variants": {m: VARIANTS[m] for m in args.models}, "epoch_grid": grid, "seeds": args.seeds,
                   "domains": domains, "videos": {d: [it["vid"] for it in v] for d, v in data.items()},
                   "features": "I3D rgb+flow (2048-d, each stream L2-normalised), CLIP title tokens (key 'token', "
                   "512-d), 2-s clips", "random_draws": RANDOM_DRAWS, "ridge_lambdas": list(RIDGE_LAMBDAS),
                   "workers": args.workers, "threads": args.threads, "quick": args.quick},
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "seconds": {"total": time.time() - t0, "baselines": t_base, "training_wall": train_wall,
                    "training_job_sum_with_cached": float(sum(r["seconds"] for r in results)),
                    "jobs": len(jobs)},
        "command": "python benchmarks/tvsum.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if out_path:
        from vidmamba.utils import atomic_write_text

        atomic_write_text(out_path, json.dumps(result, indent=1) + "\n")
    print(render_markdown(result))
    return result


if __name__ == "__main__":
    main()
