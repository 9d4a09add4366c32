"""HieraMamba trains queries whose truth lies outside the training window (``data.negative_queries``) as
all-background: the reference is the same query with its segment moved wholly past the end of the video, which gives
no positive point through the ordinary positive path."""
import torch

from tiny_data import data_section, make_snag
from vidmamba.tasks import get_task
from vidmamba.tasks.long_grounding import build_dataset

TINY = {"name": "hieramamba", "video_dim": 6, "text_dim": 4, "embd_dim": 32, "text_embd_dim": 16, "num_blocks": 3,
        "d_state": 8, "headdim": 16, "max_seq_len": 8, "chunk_size": 4, "proj_dim": 8, "text_layers": 1,
        "loss_normalization": "per_query"}


def test_negative_queries_train_as_background(tmp_path):
    root = make_snag(tmp_path, 6, 4, lengths=(120, 150), queries=12, seed=1)
    task = get_task("nlq")
    data = task.data_options(data_section(root, max_clips=20, max_queries=2, negative_queries=3))
    config = {"task": "nlq", "model": dict(TINY), "data": data}
    torch.manual_seed(0)
    model = task.build_model(config).eval()      # eval: no dropout, no normaliser update
    ds = build_dataset(data, "train", train=True)
    batch = next(b for b in (ds.collate([ds[i], ds[i + 1]]) for i in range(0, len(ds) - 1, 2))
                 if b["negative"].any())
    neg = batch["negative"]
    length = batch["video"].shape[1]
    outside = batch["segments_grid"].clone()
    outside[neg] = torch.tensor([length + 50.0, length + 60.0])    # past every point of the video: no positive
    reference = model({**{k: v for k, v in batch.items() if k != "negative"}, "segments_grid": outside})
    got = model(batch)
    for key in ("loss", "loss_cls", "loss_reg"):
        torch.testing.assert_close(got[key], reference[key])
    # the negative rows' own segments mean nothing: any segment there gives the same loss
    moved = batch["segments_grid"].clone()
    moved[neg] = torch.tensor([3.0, 3.0])                           # even a zero-length one
    torch.testing.assert_close(model({**batch, "segments_grid": moved})["loss"], got["loss"])
    # and a positive query is not background: flagging it negative changes the loss
    flagged = neg.clone()
    flagged[(~neg).nonzero()[0]] = True
    assert not torch.isclose(model({**batch, "negative": flagged})["loss"], got["loss"])
