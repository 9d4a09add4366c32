"""Web demo ``vidmamba serve`` (extra ``[demo]``: gradio): a video (upload, or a path under ``--video-dir``) and
one or more queries (one per line) -> ranked moments as seek buttons for the player, and the saliency plot.

The app is built around one call, ``predict_fn(video_path, queries) -> result`` with::

    result = {"duration": float, "clip_length": float,
              "results": [{"query": str, "windows": [[start_s, end_s, score], ...],
                           "saliency": [T floats]}, ...]}

(one entry per query, in order: what a :class:`vidmamba.video.predict.VideoPredictor` returns). Every session keeps
its own result in a ``gr.State``; the app holds no mutable state of its own, so concurrent users never see each
other's videos or answers.

Under load: ``workers`` requests are answered at once (default: one per CPU core, at most 8), each with
``cores // workers`` torch threads so that they do not oversubscribe the cores; the rest wait in gradio's queue. The
server's memory stays bounded: gradio keeps a copy of the page's component config for every session, so only the
:data:`SESSIONS` most recent sessions are kept (an older tab that asks again starts a fresh one), a session's result
expires after :data:`STATE_TTL_S`, and uploads and rendered plots older than :data:`FILE_TTL_S` are deleted.
"""
from __future__ import annotations

import html
import ipaddress
import math
import os
import socket
import tempfile
from pathlib import Path
from typing import Callable

from vidmamba.errors import InputError, VidmambaError, require_extra

PredictFn = Callable[[str, list], dict]
PLAYER_ID = "vm-player"
#: Thumbnails of this many top moments go under the plot.
PLOT_THUMBS = 3
MAX_WORKERS = 8
SESSIONS = 64         # sessions whose state the server keeps (gradio's default is 10,000)
STATE_TTL_S = 3600    # a session's result (to switch between its queries) lives this long
FILE_TTL_S = 3600     # uploads and plots are deleted this long after they were written

# Clicking a moment button seeks this app's player (event delegation: survives every re-render of the list).
SEEK_JS = f"""
element.addEventListener('click', (event) => {{
  const button = event.target.closest('[data-seek]');
  const video = document.querySelector('#{PLAYER_ID} video');
  if (!button || !video) return;
  video.currentTime = parseFloat(button.dataset.seek);
  video.dataset.seekedTo = button.dataset.seek;
}});
"""


def check_result(result, queries: list) -> dict:
    """Validate ``predict_fn``'s answer against the contract in the module docstring; returns it."""
    def bad(why):
        return ValueError(f"predict_fn returned an invalid result: {why}")

    if not isinstance(result, dict) or not {"duration", "clip_length", "results"} <= result.keys():
        raise bad(f"expected a dict with duration, clip_length, results; got {type(result).__name__} "
                  f"{sorted(result) if isinstance(result, dict) else ''}")
    for key in ("duration", "clip_length"):
        if not isinstance(result[key], (int, float)) or not math.isfinite(result[key]) or result[key] <= 0:
            raise bad(f"{key} = {result[key]!r}, expected a positive number of seconds")
    got = [r.get("query") for r in result["results"]] if isinstance(result["results"], list) else None
    if got != list(queries):
        raise bad(f"results are for queries {got!r}, expected {list(queries)!r}")
    for i, r in enumerate(result["results"]):
        if not {"windows", "saliency"} <= r.keys():
            raise bad(f"results[{i}] lacks 'windows' or 'saliency'")
    return result


def parse_queries(text) -> list[str]:
    """One query per non-empty line; an empty list is an error."""
    queries = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not queries:
        raise InputError("enter at least one query (one per line)")
    return queries


def resolve_server_video(path_text: str, video_dir) -> Path:
    """A server-side video path, which must be an existing file inside ``video_dir`` (never outside it)."""
    if video_dir is None:
        raise InputError("server-side paths are disabled (start the app with --video-dir DIR to allow them)")
    root = Path(video_dir).resolve()
    path = (root / path_text.strip()).resolve()
    if not path.is_relative_to(root):
        raise InputError(f"{path_text!r} is outside the allowed video folder {root}")
    if not path.is_file():
        raise InputError(f"no video file {path_text!r} in {root}")
    return path


def moments_html(query: str, moments: list, clip_length: float) -> str:
    """The ranked moments of one query as buttons carrying their start time (``data-seek``) for ``SEEK_JS``."""
    if not moments:
        return f"<p>No moments for <b>{html.escape(query)}</b>.</p>"
    rows = "".join(
        f'<li><button class="vm-moment" data-seek="{st:.3f}" data-rank="{k + 1}">#{k + 1} &nbsp; '
        f"{st:.1f} s - {ed:.1f} s &nbsp; (score {score:.3f})</button></li>"
        for k, (st, ed, score) in enumerate(moments))
    return (f'<div class="vm-moments"><p>Moments for <b>{html.escape(query)}</b> (click to seek; clips of '
            f"{clip_length:g} s):</p><ol>{rows}</ol></div>")


def render(state: dict, query: str):
    """(moments HTML, saliency plot as a PIL image with thumbnails of the top moments) for one session query."""
    from PIL import Image

    from vidmamba.video.predict import plot_result

    entry = next(r for r in state["results"] if r["query"] == query)
    with tempfile.TemporaryDirectory(prefix="vidmamba-serve-") as tmp:
        [png] = plot_result({**state, "results": [entry]}, Path(tmp) / "plot.png", state["video"], PLOT_THUMBS)
        with Image.open(png) as im:
            image = im.copy()
    return moments_html(query, entry["windows"], state["clip_length"]), image


def build_app(predict_fn: PredictFn, *, video_dir=None, title: str = "vidmamba: find moments in a video"):
    """The gradio Blocks app around ``predict_fn`` (see the module docstring). ``video_dir``: a folder whose files
    may be named by server-side path (None: uploads only)."""
    gr = require_extra("gradio", "demo", "the web demo")

    def analyse(upload, server_path, queries_text):
        try:
            queries = parse_queries(queries_text)
            if server_path and server_path.strip():
                video = str(resolve_server_video(server_path, video_dir))
            elif upload:
                video = upload
            else:
                raise InputError("upload a video or give a server-side path")
            state = {"video": video, **check_result(predict_fn(video, queries), queries)}
            moments, plot = render(state, queries[0])
        except VidmambaError as exc:  # bad input, unreadable video; anything else is a bug and stays one
            message = str(exc)
            if upload:  # the server's temp path of an upload is no business of the user: its file name only
                message = message.replace(str(upload), Path(upload).name)
            raise gr.Error(message) from exc
        shown = gr.skip() if video == upload else video  # a server-side video goes into the player
        return shown, state, gr.update(choices=queries, value=queries[0], visible=len(queries) > 1), moments, plot

    def show(state, query):
        if not state or not query:
            return gr.skip(), gr.skip()
        return render(state, query)

    with gr.Blocks(title=title, delete_cache=(FILE_TTL_S // 4, FILE_TTL_S)) as app:
        gr.Markdown(f"## {title}\nUpload a video (or name one on the server), enter one query per line, press "
                    "**Find moments**. Click a moment to jump there in the player.")
        state = gr.State(None, time_to_live=STATE_TTL_S)  # per session
        with gr.Row():
            with gr.Column():
                player = gr.Video(label="video", sources=["upload"], elem_id=PLAYER_ID)
                server_path = gr.Textbox(label=f"or a video path under {video_dir}", visible=video_dir is not None,
                                         elem_id="vm-path")
                queries = gr.Textbox(label="queries (one per line)", lines=3, elem_id="vm-queries")
                run = gr.Button("Find moments", variant="primary", elem_id="vm-run")
            with gr.Column():
                choice = gr.Dropdown(label="show query", choices=[], visible=False, elem_id="vm-choice")
                moments = gr.HTML("<p>No results yet.</p>", js_on_load=SEEK_JS, elem_id="vm-moments")
                plot = gr.Image(label="saliency and moments", type="pil", interactive=False, elem_id="vm-plot")
        run.click(analyse, [player, server_path, queries], [player, state, choice, moments, plot])
        choice.input(show, [state, choice], [moments, plot])
    return app


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """Requests answered at once by default: one per CPU core this process may use, at most :data:`MAX_WORKERS`."""
    return max(1, min(MAX_WORKERS, _cores()))


def check_listen_address(host: str, port: int) -> None:
    """``host:port`` must be an address of this machine that is free to listen on, checked before anything loads;
    otherwise an :class:`~vidmamba.errors.InputError` saying which part is wrong."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port}: expected a port number in 1..65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if all(c.isdigit() or c == "." for c in host):
            raise InputError(f"--host {host}: not a valid IPv4 address") from None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise InputError(f"--host {host}: not an IP address or a host name this machine resolves") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise InputError(f"cannot listen on {host}:{port}: {e.strerror} (use another --port, or --host "
                             "127.0.0.1)") from None


def serve(predict_fn: PredictFn, *, video_dir=None, host: str = "127.0.0.1", port: int | None = None,
          workers: int = 0, **launch_kw):
    """Build the app and start serving it (``prevent_thread_lock=True`` in ``launch_kw``: return at once); returns
    the app (``app.local_url``, ``app.close()``). ``workers``: requests answered at once (0: :func:`default_workers`).
    """
    workers = workers or default_workers()
    app = build_app(predict_fn, video_dir=video_dir)
    app.queue(default_concurrency_limit=workers)
    allowed = [str(Path(video_dir).resolve())] if video_dir else []
    app.launch(server_name=host, server_port=port, allowed_paths=allowed, show_error=True,
               state_session_capacity=SESSIONS, **launch_kw)
    return app


def make_predictor(ckpt, encoder, cache_dir=None, workers: int = 0) -> PredictFn:
    """``predict_fn`` for a checkpoint (folder or hub id) and a CLIP encoder (folder or hub id): a
    :class:`~vidmamba.video.predict.VideoPredictor`, so both are loaded and checked once at start-up (a checkpoint
    that does not fit the encoder fails here, not on a request) and shared by all requests. With ``workers``
    requests at once (0: :func:`default_workers`), torch gets ``cores // workers`` threads (at least 1)."""
    import torch

    from vidmamba.video.predict import VideoPredictor

    torch.set_num_threads(max(1, _cores() // (workers or default_workers())))
    return VideoPredictor(ckpt, encoder, cache_dir=cache_dir)
