"""Networks: autoencoder (more join with the models issue)."""
