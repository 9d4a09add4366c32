"""vidmamba: linear-time selective state-space models for video-language understanding."""
__version__ = "0.1.0"
