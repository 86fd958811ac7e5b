"""flatkd: train knowledge-distillation models and measure the flatness and robustness they reach."""
__version__ = "0.1.0"
