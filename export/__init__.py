"""torch -> ONNX/TFLite graphs, quantization and the bundle writer (see the export issue)."""
