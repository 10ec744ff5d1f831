"""Datasets: the synthetic talking-face generator, LRS3 preprocessing, the manifest, the loader."""
