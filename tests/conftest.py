import pathlib

import pytest
import torch

# 2-core CI: one intra-op thread per test worker (pytest -n 2) avoids OpenMP oversubscription.
torch.set_num_threads(1)

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """Path to ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


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
