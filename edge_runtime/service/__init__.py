"""Running as a service: layered settings files and systemd's sd_notify protocol."""
