"""Fine-tuning: the settings of a run, the classifier and how it is saved, evaluation and
baselines, the training loop, checkpoints, multi-process training, run bookkeeping, the worker
that runs one, the model registry and the reports."""
