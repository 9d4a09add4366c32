"""Figures for people: a video's ranked moments and per-clip saliency on one timeline (extra ``[plot]``: matplotlib)."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from vidmamba.utils import atomic_write_bytes

#: Output size in pixels: FIG_WIDTH x FIG_HEIGHT, plus THUMB_HEIGHT when thumbnails are given.
FIG_WIDTH, FIG_HEIGHT, THUMB_HEIGHT, DPI = 1200, 420, 240, 100
#: At most this many moments are drawn on the timeline (and at most MAX_THUMBS thumbnails below it).
MAX_MOMENTS, MAX_THUMBS = 10, 5


def _check_inputs(duration, clip_length, saliency, moments, query, thumbnails):
    """Validate and normalise; returns (saliency (T,) float array, moments (K, 3) sorted by score, thumbnails)."""
    for name, value in (("duration", duration), ("clip_length", clip_length)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"plot_moments: {name} must be a positive finite number of seconds, got {value!r}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"plot_moments: query must be a non-empty string, got {query!r}")
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim != 1 or sal.size == 0 or not np.isfinite(sal).all():
        raise ValueError(f"plot_moments: saliency must be a non-empty 1-D list of finite numbers, got shape "
                         f"{sal.shape}" + ("" if sal.ndim != 1 or sal.size == 0 else " with NaN/Inf values"))
    if abs(sal.size * clip_length - duration) >= clip_length - 1e-6:
        lo, hi = math.floor(duration / clip_length + 1e-6), math.ceil(duration / clip_length - 1e-6)
        want = f"{lo}" if lo == hi else f"{lo} or {hi}"
        raise ValueError(f"plot_moments: saliency has {sal.size} values but a {duration:g}-s video in "
                         f"{clip_length:g}-s clips has {want} clips")
    extent = max(duration, sal.size * clip_length)
    rows = []
    for i, m in enumerate(moments):
        if len(m) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in m):
            raise ValueError(f"plot_moments: moments[{i}] must be [start_s, end_s, score] (finite), got {m!r}")
        st, ed, score = map(float, m)
        if not (0 <= st < ed <= extent + 1e-6):
            raise ValueError(f"plot_moments: moments[{i}] = [{st:g}, {ed:g}] is not a window inside the video "
                             f"(expected 0 <= start < end <= {extent:g} s)")
        rows.append((st, ed, score))
    rows.sort(key=lambda r: -r[2])
    thumbs = []
    for i, item in enumerate(thumbnails or ()):
        if len(item) not in (2, 3):
            raise ValueError(f"plot_moments: thumbnails[{i}] must be (time_s, HxWx3 uint8 image[, rank])")
        t, img, rank = (*item, None)[:3]
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"plot_moments: thumbnails[{i}] rank must be an int >= 1, got {rank!r}")
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or 0 in img.shape:
            raise ValueError(f"plot_moments: thumbnails[{i}] image must be an HxWx3 uint8 array, "
                             f"got shape {img.shape} dtype {img.dtype}")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= extent + 1e-6:
            raise ValueError(f"plot_moments: thumbnails[{i}] time {t!r} is outside the video (0..{extent:g} s)")
        thumbs.append((float(t), img, rank))
    return sal, rows, thumbs


def moments_figure(*, duration: float, clip_length: float, saliency: Sequence[float],
                   moments: Sequence[Sequence[float]], query: str,
                   thumbnails: Sequence[tuple] | None = None):
    """The matplotlib ``Figure`` that :func:`plot_moments` writes (same arguments, same checks).

    Timeline axes: the per-clip saliency as a filled step curve (min-max scaled, left axis 0..1), the top
    ``MAX_MOMENTS`` moments as bars above it (rank 1 on top, labelled ``#rank score``), a dotted vertical line at each
    thumbnail's time, and a legend naming the three. ``thumbnails``: ``(time_s, image)`` or ``(time_s, image, rank)``
    (the frame of the moment of that rank), titled ``#rank  t s`` (just ``t s`` without a rank).
    """
    sal, rows, thumbs = _check_inputs(duration, clip_length, saliency, moments, query, thumbnails)
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plot_moments needs matplotlib: pip install 'vidmamba[plot]'") from e
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # the OO API: no global pyplot state, safe in a web server's threads
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    del matplotlib
    thumbs = thumbs[:MAX_THUMBS]
    height = FIG_HEIGHT + (THUMB_HEIGHT if thumbs else 0)
    fig = Figure(figsize=(FIG_WIDTH / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    top = 1.0 - 0.06 * FIG_HEIGHT / height  # room for the title
    bottom = (THUMB_HEIGHT + 45) / height if thumbs else 45 / height
    ax = fig.add_axes((0.06, bottom, 0.92, top - bottom - 0.02))
    extent = max(duration, sal.size * clip_length)
    edges = np.arange(sal.size + 1) * clip_length  # clip i spans [i, i+1) * clip_length
    norm = (sal - sal.min()) / (np.ptp(sal) + 1e-12)
    ax.stairs(norm, edges, fill=True, color="tab:gray", alpha=0.25)
    ax.stairs(norm, edges, color="black", linewidth=1)
    shown = rows[:MAX_MOMENTS]
    for rank, (st, ed, score) in enumerate(shown):
        y = 1.12 + 0.1 * (len(shown) - 1 - rank)  # rank 1 on top
        ax.hlines(y, st, ed, colors=f"C{rank % 10}", linewidth=5)
        ax.text(ed + 0.005 * extent, y, f"#{rank + 1} {score:.2f}", va="center", fontsize=7)
    for t, _, _ in thumbs:
        ax.axvline(t, color="tab:blue", linestyle=":", linewidth=1)
    handles = [Line2D([], [], color="C0", linewidth=5, label="moments: #rank score (rank 1 on top)"),
               Patch(facecolor=(0.5, 0.5, 0.5, 0.25), edgecolor="black", label="per-clip saliency (scaled 0-1)")]
    if thumbs:
        handles.append(Line2D([], [], color="tab:blue", linestyle=":", label="thumbnail times"))
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(handles), fontsize=7,
              frameon=False, borderaxespad=0.2)  # above the timeline: never hides a bar
    ax.set_xlim(0, extent * 1.06)
    ax.set_ylim(-0.03, 1.2 + 0.1 * max(len(shown), 1))
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlabel("seconds")
    ax.set_ylabel("saliency")
    fig.suptitle(f'"{query}"  -  {len(rows)} moment(s), top {len(shown)} shown', fontsize=10, y=0.99)
    for i, (t, img, rank) in enumerate(thumbs):
        w = 0.92 / MAX_THUMBS
        tax = fig.add_axes((0.06 + i * w, 8 / height, w * 0.95, (THUMB_HEIGHT - 20) / height))
        tax.imshow(img)
        tax.set_title(f"#{rank}  {t:.1f} s" if rank is not None else f"{t:.1f} s", fontsize=8)
        tax.axis("off")
    return fig


def plot_moments(out_path, *, duration: float, clip_length: float, saliency: Sequence[float],
                 moments: Sequence[Sequence[float]], query: str,
                 thumbnails: Sequence[tuple] | None = None) -> Path:
    """Draw one query's answer and write it as a PNG atomically; returns the path.

    Args:
        duration: video length in seconds.
        clip_length: seconds per clip; ``saliency`` has one value per clip (T = floor or ceil of duration/clip_length).
        saliency: (T,) per-clip saliency scores, drawn as a curve (min-max scaled to [0, 1]).
        moments: (K, 3) ``[start_s, end_s, score]``; the top ``MAX_MOMENTS`` by score are drawn as ranked bars.
        query: the text query (figure title).
        thumbnails: optional ``[(time_s, HxWx3 uint8[, rank])]``, e.g. one frame per top moment with its rank; the
            first ``MAX_THUMBS`` are shown in a row under the timeline, each linked to its time by a dotted line on
            the timeline and titled ``#rank  t s``.
    Output size: ``FIG_WIDTH x FIG_HEIGHT`` pixels, ``+ THUMB_HEIGHT`` with thumbnails. The figure is
    :func:`moments_figure`'s. Raises ValueError naming the field for inputs that do not describe one video.
    """
    fig = moments_figure(duration=duration, clip_length=clip_length, saliency=saliency, moments=moments, query=query,
                         thumbnails=thumbnails)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(out_path, buf.getvalue())
    return Path(out_path)
