"""plot_moments: the PNG it writes (size, content) and its errors for inputs that do not describe one video."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from vidmamba.viz import FIG_HEIGHT, FIG_WIDTH, THUMB_HEIGHT, plot_moments  # noqa: E402

SAL = np.sin(np.linspace(0, 6, 15)).tolist()  # 15 clips of 2 s: a 30-s video
MOMENTS = [[4.0, 10.0, 0.9], [20.0, 26.0, 0.5], [0.0, 2.0, 0.1]]


def _plot(path, **kw):
    args = dict(duration=30.0, clip_length=2.0, saliency=SAL, moments=MOMENTS, query="a dog jumps")
    args.update(kw)
    return plot_moments(path, **args)


def test_png_size_and_content(tmp_path):
    out = _plot(tmp_path / "sub" / "plot.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (FIG_WIDTH, FIG_HEIGHT)
        plain = np.asarray(im.convert("RGB"))
    frame = np.zeros((24, 32, 3), np.uint8)
    frame[..., 0] = 255  # pure red thumbnails: must appear in the picture
    out2 = _plot(tmp_path / "thumbs.png", thumbnails=[(7.0, frame), (23.0, frame)])
    with Image.open(out2) as im:
        assert im.size == (FIG_WIDTH, FIG_HEIGHT + THUMB_HEIGHT)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 240) & (rgb[..., 1] < 15) & (rgb[..., 2] < 15)
    assert red[-THUMB_HEIGHT:].sum() > 500 and red[:-THUMB_HEIGHT].sum() == 0
    # different moments draw a different picture
    out3 = _plot(tmp_path / "other.png", moments=[[12.0, 18.0, 0.7]])
    with Image.open(out3) as im:
        assert (np.asarray(im.convert("RGB")) != plain).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.png", "sub", "thumbs.png"]  # no temp files left


@pytest.mark.parametrize("kw, match", [
    (dict(moments=[[25.0, 40.0, 0.9]]), r"moments\[0\] = \[25, 40\] is not a window inside the video"),
    (dict(moments=[[-1.0, 3.0, 0.9]]), r"moments\[0\]"),
    (dict(moments=[[8.0, 4.0, 0.9]]), r"start < end"),
    (dict(moments=[[1.0, 2.0]]), r"moments\[0\] must be \[start_s, end_s, score\]"),
    (dict(saliency=SAL[:10]), r"saliency has 10 values but a 30-s video in 2-s clips has 15 clips"),
    (dict(saliency=[[0.1, 0.2]]), r"saliency must be a non-empty 1-D"),
    (dict(saliency=SAL[:-1] + [float("nan")]), r"NaN"),
    (dict(duration=0.0), r"duration must be a positive"),
    (dict(clip_length=-2.0), r"clip_length must be a positive"),
    (dict(query="  "), r"query must be a non-empty string"),
    (dict(thumbnails=[(5.0, np.zeros((4, 4), np.uint8))]), r"thumbnails\[0\] image must be an HxWx3 uint8"),
    (dict(thumbnails=[(99.0, np.zeros((4, 4, 3), np.uint8))]), r"thumbnails\[0\] time 99.0 is outside the video"),
])
def test_bad_input_is_a_clear_error(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _plot(tmp_path / "x.png", **kw)
    assert not (tmp_path / "x.png").exists()


def test_partial_last_clip_is_accepted(tmp_path):
    # 31 s in 2-s clips: 15 (last partial clip dropped) or 16 values; a window up to 32 s is inside the clip extent
    for n in (15, 16):
        _plot(tmp_path / f"{n}.png", duration=31.0, saliency=np.ones(n), moments=[[28.0, 31.0, 1.0]])
    with pytest.raises(ValueError, match="has 15 or 16 clips"):
        _plot(tmp_path / "bad.png", duration=31.0, saliency=np.ones(17))


def test_figure_has_a_legend_and_ranked_thumbnails():
    from vidmamba.viz import moments_figure

    frame = np.zeros((8, 8, 3), np.uint8)
    # the frames of moments #1 and #3 (its centre may lie inside #1's window: the given rank is the title), and a
    # frame without a rank
    fig = moments_figure(duration=30.0, clip_length=2.0, saliency=SAL, moments=MOMENTS, query="a dog jumps",
                         thumbnails=[(7.0, frame, 1), (8.0, frame, 3), (15.0, frame)])
    timeline, *thumb_axes = fig.axes
    legend = timeline.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [
        "moments: #rank score (rank 1 on top)", "per-clip saliency (scaled 0-1)", "thumbnail times"]
    assert [a.get_title() for a in thumb_axes] == ["#1  7.0 s", "#3  8.0 s", "15.0 s"]
    with pytest.raises(ValueError, match=r"thumbnails\[0\] rank must be an int >= 1"):
        moments_figure(duration=30.0, clip_length=2.0, saliency=SAL, moments=MOMENTS, query="q",
                       thumbnails=[(7.0, frame, 0)])
    assert timeline.get_ylabel() == "saliency" and timeline.get_xlabel() == "seconds"
    assert fig._suptitle.get_text().startswith('"a dog jumps"')
    # without thumbnails there is no dotted line, and the legend does not name one
    plain = moments_figure(duration=30.0, clip_length=2.0, saliency=SAL, moments=MOMENTS, query="q")
    assert [t.get_text() for t in plain.axes[0].get_legend().get_texts()][-1] == "per-clip saliency (scaled 0-1)"
