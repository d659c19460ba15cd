"""The chat sandbox: a conversation's settings and limits, the context under a token budget,
replies and which limit ended them, the limit bench, the backends (the embedded model through
devmode's own decoder, or an OpenAI-compatible endpoint), saved conversations and `serve`."""
