"""Stage 2, sound to mouth shapes: the viseme vocabulary, the recognisers (the bundle's
learned graph, pocketsphinx, files) and the frame-paced viseme stream."""
