"""Neural-network building blocks shared by the models: masks, segment ops, losses, 1-D NMS, attention, pooling,
position encodings, MLP and transformer blocks, LayerScale / DropPath / Scale, masked conv heads. Channel-last (b, l, d); masks (b, l) bool,
True = valid. (Norms and the depthwise conv of the SSM mixers live in ``vidmamba.ssm``.)"""
from vidmamba.nn.attention import CrossAttention, MaskedMHA, masked_attention
from vidmamba.nn.blocks import TransformerBlock, mlp
from vidmamba.nn.drop import DropPath, drop_path
from vidmamba.nn.heads import ConvHead, DenseGroundingHead, MaskedConv1d, SaliencyHead
from vidmamba.nn.losses import (
    cosine_similarity_matrix,
    ctr_diou_loss,
    ctr_iou_loss,
    foreground_bce_loss,
    giou_loss,
    label_smoothing_cross_entropy,
    multi_positive_info_nce,
    random_subset,
    reduce_loss,
    saliency_inter_loss,
    saliency_intra_loss,
    sigmoid_focal_loss,
    smooth_l1_span_loss,
    soft_target_cross_entropy,
    symmetric_info_nce,
)
from vidmamba.nn.mask import (batch_mask, check_mask, finite_at_valid, lengths_to_mask, masked_fill_pads, masked_mean,
                              masked_softmax)
from vidmamba.nn.nms import nms_1d, segment_voting, soft_nms_voting
from vidmamba.nn.pooling import WeightedPool
from vidmamba.nn.position import SinusoidalPositionEncoding, sinusoid_encoding
from vidmamba.nn.scale import LayerScale, Scale
from vidmamba.nn.segments import (
    cxw_to_xx,
    offsets_to_segments,
    pairwise_diou,
    pairwise_giou,
    pairwise_iou,
    segment_diou,
    segment_giou,
    segment_iou,
    xx_to_cxw,
)

__all__ = [
    "CrossAttention", "MaskedMHA", "masked_attention",
    "TransformerBlock", "mlp",
    "DropPath", "drop_path",
    "ConvHead", "DenseGroundingHead", "MaskedConv1d", "SaliencyHead",
    "cosine_similarity_matrix", "ctr_diou_loss", "ctr_iou_loss", "foreground_bce_loss", "giou_loss",
    "label_smoothing_cross_entropy", "multi_positive_info_nce", "random_subset", "reduce_loss",
    "saliency_inter_loss", "saliency_intra_loss", "sigmoid_focal_loss", "smooth_l1_span_loss",
    "soft_target_cross_entropy", "symmetric_info_nce",
    "batch_mask", "check_mask", "finite_at_valid", "lengths_to_mask", "masked_fill_pads", "masked_mean",
    "masked_softmax",
    "nms_1d", "segment_voting", "soft_nms_voting",
    "WeightedPool",
    "SinusoidalPositionEncoding", "sinusoid_encoding",
    "LayerScale", "Scale",
    "cxw_to_xx", "offsets_to_segments", "pairwise_diou", "pairwise_giou", "pairwise_iou",
    "segment_diou", "segment_giou", "segment_iou", "xx_to_cxw",
]
