"""From video files to features: streamed PyAV decoding, CLIP encoders, cached extraction, prediction on raw
videos (extra ``[video]``). Submodules: ``decode``, ``encoders``, ``extract``, ``predict``, ``synthetic``."""
from vidmamba.video.decode import ClipBatch, VideoDecodeError, frames_at, iter_clips, num_clips_for, sample_times

__all__ = ["ClipBatch", "VideoDecodeError", "frames_at", "iter_clips", "num_clips_for", "sample_times"]
