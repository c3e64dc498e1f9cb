"""flowgate_client: numpy-in/numpy-out client for the flowgate inference server (protocol v1)."""
