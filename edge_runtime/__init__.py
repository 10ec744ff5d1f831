"""Device runtime of TempoSync Edge: numpy + onnxruntime/LiteRT, never torch."""
