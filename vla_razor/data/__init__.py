"""Demonstration datasets for behaviour cloning."""

from .chunks import ChunkDataset

__all__ = ["ChunkDataset"]
