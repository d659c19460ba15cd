"""Models: inference on a saved classifier (loading it, batched prediction on the device and in
the precision the machine suits, int8 on the CPU), the registry of saved models and their
archives. Fine-tuning, labels, suites and the Monitor all predict through here."""
