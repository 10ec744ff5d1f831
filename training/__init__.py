"""Host side: data, models, diffusion, losses, trainers and evaluation (PyTorch)."""
