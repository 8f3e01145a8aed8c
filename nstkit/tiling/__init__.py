"""Tiled stylisation: images larger than memory allows, one tile at a time (``tiling:``)."""
