"""Stage 4, frames out (E1): mp4 with the audio, PNG frames, the live MJPEG page."""
