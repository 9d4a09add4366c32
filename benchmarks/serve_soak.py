"""`vidmamba serve` under load on 127.0.0.1: single-request latency, latency at N concurrent clients, and a soak with
the server's resident memory (RSS) sampled, all bounded in requests and in time.

The server is the real command (``vidmamba serve`` in a child process, listening on 127.0.0.1 only) with a randomly
initialised MLVTG exported as a pretrained folder and a randomly initialised CLIP of ViT-B/32's size (the real
architecture, offline weights: timings are real, answers are not). Every request is a new session, as a new browser
tab: it uploads one of ``--videos`` generated videos (their CLIP features are cached after the first request, as for
a user asking several questions) with two queries and waits for the moments and the plot (gradio_client).

Phases: ``single`` (one request at a time, the latency baseline), ``concurrent`` (``--clients`` clients, each sending
requests back to back), ``soak`` (the same load for ``--soak-minutes``, RSS of the server sampled every
``--sample-s`` seconds). The RSS verdict looks at the last two thirds of the soak: flat when its max and min are
within +-5% of their mean.

Prints JSON and writes ``benchmarks/results_serve_soak.json`` (load average, CPU, torch version, commit beside).

    python benchmarks/serve_soak.py --soak-minutes 30          # the full soak (about 32 minutes)
    python benchmarks/serve_soak.py --soak-minutes 2 --out /tmp/soak.json   # a quick look
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import torch

from vidmamba.utils import print_and_write_json

HOST = "127.0.0.1"
QUERIES = ["a person opens the door\na dog runs across the room", "someone pours water\na car drives away"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def make_inputs(root: Path, n_videos: int, seconds: int) -> tuple[Path, Path, list[Path]]:
    """(pretrained folder, CLIP folder, videos): a random MLVTG on CLIP widths and a ViT-B/32-size random CLIP."""
    from vidmamba.engine.checkpoint import save_checkpoint
    from vidmamba.models import create_model
    from vidmamba.tasks import export_pretrained
    from vidmamba.video.encoders import VIT_B_32, save_tiny_clip
    from vidmamba.video.synthetic import write_video

    clip = save_tiny_clip(root / "clip", **VIT_B_32)
    torch.manual_seed(0)
    options = {"video_dim": 512, "text_dim": 512, "clip_length": 2.0}
    model = create_model("mlvtg", **options)
    experiment = {"task": "qvhighlights", "model": {"name": "mlvtg", **options},
                  "data": {"dataset": "qvhighlight", "feature_root": ".", "video_features": ["clip_features"],
                           "video_dims": [512], "text_features": "clip_text_features", "text_dim": 512},
                  "train": {}}
    save_checkpoint(root / "run" / "best", model, config={"model": experiment})
    export_pretrained(root / "run", root / "pretrained")
    videos = [write_video(root / f"video{k}.mp4", [i / 4 for i in range(4 * (seconds + k))], height=96, width=128)
              for k in range(n_videos)]  # distinct lengths: distinct files
    return root / "pretrained", clip, videos


def wait_until_up(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    import urllib.request

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer on {url} within {timeout_s} s")


class Load:
    """Clients sending requests back to back; latencies and failures recorded per request."""

    def __init__(self, url: str, videos: list[Path]):
        from gradio_client import Client

        self.url, self.videos = url, videos
        self.local = threading.local()
        self.client_class = Client

    def request(self, k: int) -> float:
        from gradio_client import handle_file

        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = self.client_class(self.url, verbose=False, download_files=False)
        client.session_hash = uuid.uuid4().hex  # a new session per request, as a new browser tab
        t0 = time.perf_counter()
        out = client.predict(handle_file(str(self.videos[k % len(self.videos)])), "", QUERIES[k % len(QUERIES)],
                             api_name="/analyse")
        dt = time.perf_counter() - t0
        moments = str(out[-2])  # outputs: player, query choice, moments HTML, plot (the session state is not sent)
        if "vm-moment" not in moments and "No moments" not in moments:
            raise RuntimeError(f"unexpected answer: {moments[:200]}")
        return dt

    def run(self, clients: int, *, requests: int | None = None, seconds: float | None = None, on_tick=None):
        """``clients`` threads until ``requests`` in all or ``seconds`` have passed; (latencies, failures)."""
        lock, latencies, failures, counter = threading.Lock(), [], [], iter(range(10**9))
        stop = time.time() + seconds if seconds else float("inf")

        def worker():
            while time.time() < stop:
                with lock:
                    k = next(counter)
                if requests is not None and k >= requests:
                    return
                try:
                    dt = self.request(k)
                    with lock:
                        latencies.append(dt)
                except Exception as exc:  # noqa: BLE001 - a failed request is a result, recorded
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}"[:300])

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            if on_tick:
                on_tick()
        return latencies, failures


def summary(latencies: list[float]) -> dict:
    if not latencies:
        return {"n": 0}
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [latencies[0]] * 19
    return {"n": len(latencies), "p50_s": round(statistics.median(latencies), 4), "p95_s": round(q[18], 4),
            "max_s": round(max(latencies), 4), "mean_s": round(statistics.fmean(latencies), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--videos", type=int, default=4, help="distinct videos the requests cycle through")
    ap.add_argument("--video-seconds", type=int, default=60)
    ap.add_argument("--single", type=int, default=20, help="requests of the single-client phase")
    ap.add_argument("--concurrent", type=int, default=80, help="requests of the concurrent phase")
    ap.add_argument("--soak-minutes", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=200_000, help="bound on the soak's requests")
    ap.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period of the soak")
    ap.add_argument("--workers", type=int, default=0, help="vidmamba serve --workers (0: its default)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results_serve_soak.json"))
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()  # the code the server runs: HEAD at the start

    with tempfile.TemporaryDirectory(prefix="vidmamba-soak-") as tmp:
        root = Path(tmp)
        ckpt, clip, videos = make_inputs(root, args.videos, args.video_seconds)
        port = free_port()
        url = f"http://{HOST}:{port}/"
        cmd = [str(Path(sys.executable).with_name("vidmamba")), "serve", "--ckpt", str(ckpt), "--encoder", str(clip),
               "--cache", str(root / "cache"), "--host", HOST, "--port", str(port), "--workers", str(args.workers)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
               "GRADIO_TEMP_DIR": str(root / "gradio")}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))
        try:
            wait_until_up(url, proc, 300)
            load = Load(url, videos)
            load.run(1, requests=len(videos))  # every video's features cached, as in the phases below
            rss_ready = rss_mib(proc.pid)
            single, single_fail = load.run(1, requests=args.single)
            conc, conc_fail = load.run(args.clients, requests=args.concurrent)
            samples, t0 = [], time.time()

            def sample():
                if not samples or time.time() - t0 - samples[-1][0] >= args.sample_s:
                    samples.append((round(time.time() - t0, 1), round(rss_mib(proc.pid), 1)))

            soak, soak_fail = load.run(args.clients, requests=args.max_requests, seconds=args.soak_minutes * 60,
                                       on_tick=sample)
            sample()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        log_tail = (root / "server.log").read_text()[-2000:]

    tail = [r for t, r in samples if t >= samples[-1][0] / 3] if samples else []
    mean = statistics.fmean(tail) if tail else float("nan")
    single_s, conc_s = summary(single), summary(conc)
    result = {
        "command": " ".join(["python", "benchmarks/serve_soak.py", *sys.argv[1:]]),
        "server": "vidmamba serve (random MLVTG 512-d, random CLIP of ViT-B/32 size), 127.0.0.1",
        "clients": args.clients, "videos": args.videos, "video_seconds": args.video_seconds,
        "workers": args.workers,
        "single": single_s, "concurrent": conc_s,
        "p95_concurrent_over_p50_single": round(conc_s["p95_s"] / single_s["p50_s"], 3) if single else None,
        "soak": {**summary(soak), "minutes": args.soak_minutes, "failures": len(soak_fail),
                 "rss_after_warmup_mib": round(rss_ready, 1), "rss_first_mib": samples[0][1] if samples else None,
                 "rss_last_mib": samples[-1][1] if samples else None,
                 "rss_last_two_thirds_min_mib": min(tail) if tail else None,
                 "rss_last_two_thirds_max_mib": max(tail) if tail else None,
                 "rss_last_two_thirds_spread_pct": round(100 * (max(tail) - min(tail)) / 2 / mean, 2) if tail else None,
                 "rss_samples": samples},
        "failures": {"single": single_fail[:5], "concurrent": conc_fail[:5], "soak": soak_fail[:5]},
        "server_log_tail": log_tail if (single_fail or conc_fail or soak_fail) else "",
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), platform.processor()),
        "cores": os.cpu_count(), "torch": torch.__version__,
        "commit": commit,
    }
    print_and_write_json(result, args.out, indent=2)


if __name__ == "__main__":
    main()
