"""Prompt suites: prompts x cases x variants, with assertions on every reply, kept and rerun."""
