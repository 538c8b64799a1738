"""cud-bench: a robustness and calibration benchmark for calibrated knowledge distillation."""

__version__ = "0.1.0"
