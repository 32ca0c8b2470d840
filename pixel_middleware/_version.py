"""The version, below every layer: the HTTP sink sends it as its User-Agent, the CLI prints it."""
__version__ = "0.1.0"
