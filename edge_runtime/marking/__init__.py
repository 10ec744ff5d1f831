"""Marking every output as synthetic: provenance metadata in each file format, an invisible
watermark in the pixels of every frame, the optional visible label, and edge-verify."""
