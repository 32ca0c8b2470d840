"""Flask extension for pixel_middleware (in progress)."""
