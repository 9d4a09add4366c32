"""Streamed PyAV decoding: sampling by presentation time (constant and variable frame rate), rotation, bad files."""
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("av")

from vidmamba.video.decode import (VideoDecodeError, VideoSizeChangeWarning, apply_display_matrix,  # noqa: E402
                                   frames_at, iter_clips, sample_times)
from vidmamba.video.synthetic import index_frame, read_index, write_audio_only, write_video  # noqa: E402


def displayed(frame_times, t):
    """Oracle: index of the frame a player shows at time t (the last one starting at or before t; else the first)."""
    shown = [i for i, ft in enumerate(frame_times) if ft <= t + 1e-9]
    return shown[-1] if shown else 0


def indices(batches):
    return np.concatenate([[[read_index(f) for f in clip] for clip in b.frames] for b in batches])


def test_constant_rate_samples_clip_centres_in_batches(tmp_path):
    path = write_video(tmp_path / "cfr.mp4", [i / 10 for i in range(40)])  # 10 fps, 4.0 s
    batches = list(iter_clips(path, 1.0, frames_per_clip=2, batch_clips=3))
    assert [b.first_clip for b in batches] == [0, 3] and [len(b.frames) for b in batches] == [3, 1]
    # frame j of clip i at (i + (j + .5) / 2) s: 0.25 -> frame 2, 0.75 -> frame 7, ...
    np.testing.assert_array_equal(indices(batches), [[2, 7], [12, 17], [22, 27], [32, 37]])
    np.testing.assert_allclose(np.concatenate([b.times for b in batches]),
                               [sample_times(i, 1.0, 2) for i in range(4)])
    assert batches[0].duration is None and batches[-1].duration == pytest.approx(4.0)
    assert batches[0].frames.shape[1:] == (2, 32, 48, 3) and batches[0].frames.dtype == np.uint8


def test_last_partial_clip_is_kept_and_shows_the_last_frame(tmp_path):
    path = write_video(tmp_path / "partial.mp4", [i / 10 for i in range(25)])  # ends at 2.5 s
    batches = list(iter_clips(path, 1.0))
    np.testing.assert_array_equal(indices(batches)[:, 0], [5, 15, 24])  # centre 2.5 s is past the last frame
    assert batches[-1].duration == pytest.approx(2.5)


def test_variable_frame_rate_is_sampled_by_presentation_time(tmp_path):
    rng = np.random.default_rng(0)
    gaps = rng.choice([0.02, 0.05, 0.3, 1.1], size=60)  # bursts and long still frames
    times = np.round(np.concatenate([[0.0], np.cumsum(gaps)[:-1]]), 3).tolist()
    path = write_video(tmp_path / "vfr.mp4", times)
    probe = np.round(rng.uniform(0, times[-1] + 1.0, size=40), 4).tolist() + [0.0, times[7], times[-1]]
    got = [read_index(f) for f in frames_at(path, probe)]
    assert got == [displayed(times, t) for t in probe]
    clips = indices(list(iter_clips(path, 0.5, batch_clips=7)))[:, 0]
    centres = [sample_times(i, 0.5, 1)[0] for i in range(len(clips))]
    assert clips.tolist() == [displayed(times, t) for t in centres]
    last = 1 / round(1 / min(np.diff(times)))  # the writer's last frame lasts one tick of its stream rate
    assert len(clips) == int(np.ceil((times[-1] + last - 1e-3) / 0.5))


def test_frames_at_seeks_instead_of_decoding_the_whole_file(tmp_path, monkeypatch):
    import vidmamba.video.decode as decode

    times = [i / 2 for i in range(220)]  # 110 s at 2 fps (frame indices must stay < 225 to be readable)
    path = write_video(tmp_path / "long.mp4", times)
    probe = [97.3, 3.05, 109.9, 60.0, 130.0]  # any order; past the end -> the last frame

    def no_streaming(*args, **kwargs):
        raise AssertionError("frames_at fell back to a streamed pass")

    monkeypatch.setattr(decode, "_frames_for_times", no_streaming)
    decoded = []
    real_to_rgb = decode.to_rgb
    monkeypatch.setattr(decode, "to_rgb", lambda frame: decoded.append(1) or real_to_rgb(frame))
    assert [read_index(f) for f in frames_at(path, probe)] == [displayed(times, t) for t in probe]
    assert len(decoded) == len(probe)


@pytest.mark.parametrize("rotation, white", [(90, "left"), (180, "bottom"), (270, "right")])
def test_display_rotation_is_applied(tmp_path, rotation, white):
    path = write_video(tmp_path / f"rot{rotation}.mp4", [0.0, 0.5, 1.0], rotation=rotation)
    img = frames_at(path, [0.6])[0]  # stored 32x48 with a white top band, rotated counter-clockwise
    assert img.shape == ((48, 32, 3) if rotation % 180 else (32, 48, 3))
    band = {"left": img[:, :6], "right": img[:, -6:], "bottom": img[-6:]}[white]
    assert band.min() > 240 and img.mean() < 200
    assert read_index(np.rot90(img, -rotation // 90)) == 1


# (rotation ccw, hflip, vflip) -> the display image from the stored one, by hand: rotate, then mirror
ORIENTATIONS = {(0, True, False): lambda im: im[:, ::-1], (0, False, True): lambda im: im[::-1],
                (90, True, False): lambda im: np.rot90(im)[:, ::-1], (90, False, True): lambda im: np.rot90(im)[::-1],
                (270, True, False): lambda im: np.rot90(im, 3)[:, ::-1], (180, True, False): lambda im: im[::-1]}


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_mirrored_display_matrix_is_applied(tmp_path, orientation):
    rotation, hflip, vflip = orientation
    stored = index_frame(1)
    stored[:, :4] = 255  # a white left edge too: with the white top band, all 8 orientations differ
    path = write_video(tmp_path / "flip.mp4", [0.0, 0.5], frames=[stored, stored], rotation=rotation, hflip=hflip,
                       vflip=vflip)
    want = ORIENTATIONS[orientation](stored)
    for img in (frames_at(path, [0.2])[0], next(iter_clips(path, 0.5)).frames[0, 0]):
        assert img.shape == want.shape
        assert np.abs(img.astype(int) - want).mean() < 4  # codec noise only; a wrong orientation is off by ~100


def test_apply_display_matrix_matches_ffmpeg_conventions():
    img = np.arange(6).reshape(2, 3, 1)
    one = 65536
    rot90 = np.array([[0, -one, 0], [one, 0, 0], [0, 0, 1 << 30]])  # av_display_rotation_set(-90): 90 deg ccw
    np.testing.assert_array_equal(apply_display_matrix(img, rot90), np.rot90(img))
    hflip = np.array([[-one, 0, 0], [0, one, 0], [0, 0, 1 << 30]])
    np.testing.assert_array_equal(apply_display_matrix(img, hflip), img[:, ::-1])
    assert apply_display_matrix(img, None) is img


def write_size_change(path, sizes, fps=2, per_part=4):
    """An MPEG-TS video whose frame size changes: ``per_part`` index frames at each (H, W) of ``sizes`` in turn
    (frame i at i / fps s), written as separate TS segments and concatenated byte-wise (as spliced streams are)."""
    import av
    from fractions import Fraction

    data = b""
    for part, (h, w) in enumerate(sizes):
        seg = path.with_name(f"part{part}.ts")
        with av.open(str(seg), "w", format="mpegts") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.time_base = Fraction(1, fps)
            stream.options = {"qscale": "2"}
            for i in range(part * per_part, (part + 1) * per_part):
                frame = av.VideoFrame.from_ndarray(index_frame(i, h, w), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        data += seg.read_bytes()
    path.write_bytes(data)
    return path


def test_a_resolution_change_midway_is_resized_to_the_first_size_with_a_warning(tmp_path):
    path = write_size_change(tmp_path / "spliced.ts", [(32, 48), (48, 64), (24, 40)])
    with pytest.warns(VideoSizeChangeWarning, match=r"spliced\.ts: the frame size changes from 48x32 to 64x48 at "
                                                    r"2\.250 s") as record:
        batches = list(iter_clips(path, 0.5, batch_clips=5))
    assert len([w for w in record if w.category is VideoSizeChangeWarning]) == 1  # once per video
    frames = np.concatenate([b.frames for b in batches])
    assert frames.shape == (12, 1, 32, 48, 3)
    assert [read_index(f) for f in frames[:, 0]] == list(range(12))  # every frame decoded, content kept
    assert [f.shape for f in frames_at(path, [1.0, 3.0, 5.0])] == [(32, 48, 3), (48, 64, 3), (24, 40, 3)]


def test_decoding_is_streamed(tmp_path):
    n = 1200  # 40 s at 30 fps: 1200 frames of 4.6 kB = 5.5 MB if all were held
    path = write_video(tmp_path / "long.mp4", [i / 30 for i in range(n)])
    tracemalloc.start()
    count = 0
    for batch in iter_clips(path, 0.1, batch_clips=8):
        count += len(batch.frames)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 400
    assert peak < 1_000_000, f"peak traced memory {peak} bytes: frames are being accumulated"


def test_bad_files_get_errors_naming_the_file(tmp_path):
    with pytest.raises(VideoDecodeError, match=r"missing\.mp4: video file not found"):
        list(iter_clips(tmp_path / "missing.mp4", 2.0))
    audio = write_audio_only(tmp_path / "audio.mp4")
    with pytest.raises(VideoDecodeError, match=r"audio\.mp4: the file has no video stream.*found audio"):
        frames_at(audio, [0.0])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=r"garbage\.mp4: cannot open"):
        list(iter_clips(garbage, 2.0))
    good = write_video(tmp_path / "good.mp4", [i / 10 for i in range(30)]).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(VideoDecodeError, match=r"truncated\.mp4: cannot read any stream"):  # index (moov) lost
        list(iter_clips(truncated, 1.0))
    # index first (faststart): the lost frames are still listed, and the decoder alone would just stop early
    indexed = write_video(tmp_path / "indexed.mp4", [i / 10 for i in range(50)], faststart=True).read_bytes()
    truncated.write_bytes(indexed[: len(indexed) * 2 // 3])
    with pytest.raises(VideoDecodeError, match=r"truncated\.mp4: video data ends early.*up to 5\.000 s.*found "
                                               r"frames up to [0-4]\."):
        list(iter_clips(truncated, 1.0))
    assert len(list(iter_clips(tmp_path / "indexed.mp4", 1.0))[0].frames) == 5


def test_argument_checks():
    with pytest.raises(ValueError, match="clip_length"):
        next(iter_clips("x.mp4", 0.0))
    with pytest.raises(ValueError, match="times"):
        frames_at("x.mp4", [-1.0])
