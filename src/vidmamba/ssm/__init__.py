"""Selective state-space core: scans (reference + fast) and mixers."""
from vidmamba.ssm.selective_scan import selective_scan, selective_scan_ref
from vidmamba.ssm.ssd import ssd_scan, ssd_scan_ref

__all__ = ["selective_scan", "selective_scan_ref", "ssd_scan", "ssd_scan_ref"]
