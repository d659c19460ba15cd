"""devmode: fine-tune, monitor and probe language models on financial text, from a browser or a CLI."""

__version__ = "0.1.0"
