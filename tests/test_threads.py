"""The vidmamba command makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) before torch loads, unless the
user chose a wait policy; too late once torch is imported."""
import os
import subprocess
import sys

from vidmamba.threads import USER_KNOBS, passive_openmp_waits

CLI = """
import os
from vidmamba.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
import torch
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
"""


def run(env):
    clean = {k: v for k, v in os.environ.items() if k not in USER_KNOBS}
    out = subprocess.run([sys.executable, "-c", CLI], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.splitlines()[-1].split()                 # after the --help text


def test_cli_sets_passive_waits_unless_the_user_chose():
    assert run({}) == ["PASSIVE", "None"]
    assert run({"OMP_WAIT_POLICY": "active"}) == ["active", "None"]
    assert run({"GOMP_SPINCOUNT": "1000"}) == ["None", "1000"]


def test_too_late_once_torch_is_imported(monkeypatch):
    import torch  # noqa: F401  (the runtime has read its environment)

    for knob in USER_KNOBS:
        monkeypatch.delenv(knob, raising=False)
    assert passive_openmp_waits() is False
    assert "OMP_WAIT_POLICY" not in os.environ
