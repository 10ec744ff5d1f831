"""Stage 1, sound in: 16 kHz mono from a microphone, a wav file or stdin, and the streaming
log-mel front end."""
