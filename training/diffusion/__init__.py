"""Diffusion in torch: forward process, DDIM and multistep consistency samplers."""
