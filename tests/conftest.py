import os
import pathlib

import pytest
import torch

# 2-core CI: one intra-op thread per test worker (pytest -n 2) avoids OpenMP oversubscription.
torch.set_num_threads(1)

# The real-data folder (public releases: qvhighlights_eval/, annotations/, tvsum_umt/, ...): $VIDMAMBA_DATA, as
# ``vidmamba demo`` reads it, else ../shared/data beside the checkout.
SHARED_DATA = pathlib.Path(os.environ.get("VIDMAMBA_DATA")
                           or pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture
def shared_data():
    """The real-data folder (:data:`SHARED_DATA`); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def grounding_run(tmp_path_factory):
    """``(folder, bench, config)``: a tiny MLVTG trained for 2 epochs through ``vidmamba train`` on the tiny grounding
    benchmark (:data:`tiny_data.GROUNDING_BENCH`, 16..40-clip videos) into ``folder / "run"``. Shared by the whole
    session: copy the run before changing it."""
    from tiny_data import GROUNDING_BENCH

    from vidmamba.cli import main
    from vidmamba.data.synthetic import generate_grounding_benchmark

    tmp = tmp_path_factory.mktemp("grounding")
    bench = generate_grounding_benchmark(tmp / "bench", **GROUNDING_BENCH)
    config = tmp / "tiny.yaml"
    config.write_text(f"""
task: qvhighlights
model: {{name: mlvtg, hidden_dim: 16, num_layers: 1}}
data:
  dataset: qvhighlight
  feature_root: {bench}
  train: {bench / 'train.jsonl'}
  val: {bench / 'val.jsonl'}
  video_features: [video]
  text_features: text
  max_text_len: 5  # shorter than most queries: predict must truncate as training does
train: {{epochs: 2, batch_size: 8, lr: 1e-3, progress: false, out_dir: {tmp / 'run'}}}
""")
    assert main(["train", str(config), "--set", "train.eval_every=1"]) == 0
    return tmp, bench, config


@pytest.fixture
def cli_error(capsys):
    """``cli_error(argv) -> message``: run ``vidmamba.cli.main(argv)``, check it failed the way every expected
    mistake must (exit status 2, exactly one stderr line ``vidmamba <command>: error: <message>``) and return the
    message."""
    from vidmamba.cli import main

    def run(argv):
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        prefix = f"vidmamba {argv[0]}: error: "
        assert err[0].startswith(prefix), err[0]
        return err[0][len(prefix):]

    return run
