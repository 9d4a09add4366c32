"""Data readers for the standard on-disk formats, datasets and padded collation.

- :mod:`.lighthouse`: moment_detr / lighthouse jsonl + ``.npz`` (QVHighlights, Charades-STA, TACoS, TVSum, YouTube)
- :mod:`.tvsum_umt`: TVSum in the UMT layout (I3D rgb + flow, CLIP title tokens, 20 annotators, domain splits)
- :mod:`.youtube`: YouTube Highlights in the UMT layout (per-clip ``match``, I3D rgb + flow, UMT's 6 domain splits)
- :mod:`.umt`: what the two UMT-layout readers share (annotation json, rgb / flow / audio feature streams)
- :mod:`.snag`: SnAG / HieraMamba json + ``.npy``/``.pt`` (Ego4D-NLQ, MAD, TACoS), seconds <-> grid
- :mod:`.ek100`: EPIC-KITCHENS-100 CSVs, recognition and anticipation features
- :mod:`.collate`: ``pad_sequences`` and dict collation with boolean masks (True = valid)

Every reader raises :class:`DataFormatError` (a ``ValueError``) naming the file, item and field on bad input.
"""
from .collate import PaddedCollate, collate_padded, pad_sequences
from .ek100 import (EK100_COLUMNS, EK100Action, EK100Class, EK100Dataset, observed_rows, parse_timestamp,
                    read_ek100_annotations, read_ek100_classes)
from .errors import DataFormatError
from .features import (FeatureCache, align_lengths, find_feature_file, l2_normalize, load_feature_array,
                       temporal_endpoint_features)
from .lighthouse import (DATASETS, DatasetSpec, MomentAnnotation, MomentDataset, check_targets, foreground_windows,
                         get_dataset_spec, label_foreground, label_targets, load_text_features, load_video_features,
                         read_moment_jsonl, windows_to_foreground)
from .snag import (SnagDataset, SnagQuery, SnagVideo, grid_to_seconds, load_snag_text_features,
                   load_snag_video_features, read_snag_json, seconds_to_grid)
from .tvsum_umt import (TVSUM_DOMAINS, TVSumUMTDataset, TVSumVideo, load_tvsum_query_features,
                        load_tvsum_video_features, read_tvsum_annotations, read_tvsum_domain_splits)
from .umt import load_umt_video_features
from .youtube import (YOUTUBE_DOMAINS, YOUTUBE_SPLITS, YouTubeUMTDataset, YouTubeVideo, domain_query_features,
                      read_youtube_annotations)

__all__ = [
    "DataFormatError", "pad_sequences", "collate_padded", "PaddedCollate",
    "FeatureCache", "load_feature_array", "l2_normalize", "align_lengths", "find_feature_file", "temporal_endpoint_features",
    "DATASETS", "DatasetSpec", "get_dataset_spec", "MomentAnnotation", "read_moment_jsonl", "load_video_features",
    "load_text_features", "windows_to_foreground", "foreground_windows", "label_foreground", "label_targets",
    "check_targets", "MomentDataset",
    "TVSUM_DOMAINS", "TVSumVideo", "read_tvsum_annotations", "read_tvsum_domain_splits",
    "load_tvsum_video_features", "load_tvsum_query_features", "TVSumUMTDataset", "load_umt_video_features",
    "YOUTUBE_DOMAINS", "YOUTUBE_SPLITS", "YouTubeVideo", "read_youtube_annotations", "domain_query_features",
    "YouTubeUMTDataset",
    "SnagQuery", "SnagVideo", "read_snag_json", "seconds_to_grid", "grid_to_seconds", "load_snag_video_features",
    "load_snag_text_features", "SnagDataset",
    "EK100_COLUMNS", "EK100Action", "EK100Class", "parse_timestamp", "read_ek100_annotations", "read_ek100_classes",
    "observed_rows", "EK100Dataset",
]
