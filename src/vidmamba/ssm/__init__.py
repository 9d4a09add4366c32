"""Selective state-space core: scans (reference, fast pure PyTorch, compiled CPU kernel) and mixers."""
from vidmamba.ssm.selective_scan import selective_scan, selective_scan_ref
from vidmamba.ssm.ssd import ssd_scan, ssd_scan_ref

__all__ = ["selective_scan", "selective_scan_ref", "ssd_scan", "ssd_scan_ref"]
from vidmamba.ssm.layers import GatedRMSNorm, MaskedDepthwiseConv1d, RMSNorm
from vidmamba.ssm.mamba1 import Mamba1, SharedALog
from vidmamba.ssm.mamba2 import Mamba2
from vidmamba.ssm.bimamba import BiMambaGated
from vidmamba.ssm.hydra import Hydra

__all__ += ["Mamba1", "SharedALog", "Mamba2", "BiMambaGated", "Hydra", "RMSNorm", "GatedRMSNorm",
            "MaskedDepthwiseConv1d"]
