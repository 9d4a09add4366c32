"""Evaluation metrics (numpy only): the official QVHighlights evaluation, lighthouse-style moment retrieval,
NLQ recall, TVSum / YouTube-Highlights mAP and EK100 action metrics. See :mod:`vidmamba.metrics.evaluate` for the
file-level entry point used by ``vidmamba evaluate``."""
from vidmamba.metrics.action import ek100_metrics, mean_topk_recall, topk_accuracy
from vidmamba.metrics.evaluate import PROTOCOLS, evaluate_prediction_files, evaluate_predictions
from vidmamba.metrics.highlight import eval_highlight, saliency_ap, tvsum_map, youtube_highlights_map
from vidmamba.metrics.moment_retrieval import (
    average_precision_detection,
    eval_moment_retrieval,
    eval_nlq,
    recall_at_k_iou,
    temporal_iou,
)
from vidmamba.metrics.qvhighlights import eval_qvhighlights
from vidmamba.metrics.validation import GroundTruthError, MetricsInputError, SubmissionError

__all__ = [
    "PROTOCOLS",
    "evaluate_prediction_files",
    "evaluate_predictions",
    "eval_qvhighlights",
    "eval_moment_retrieval",
    "eval_nlq",
    "eval_highlight",
    "average_precision_detection",
    "recall_at_k_iou",
    "temporal_iou",
    "saliency_ap",
    "tvsum_map",
    "youtube_highlights_map",
    "topk_accuracy",
    "mean_topk_recall",
    "ek100_metrics",
    "MetricsInputError",
    "SubmissionError",
    "GroundTruthError",
]
