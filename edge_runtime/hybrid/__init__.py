"""E2 (hybrid): latents over the wire from the device to edge-receive, which decodes them."""
