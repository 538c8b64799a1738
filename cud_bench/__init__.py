"""cud-bench: a robustness and calibration benchmark for calibrated knowledge distillation."""

import os

# Set before any library that could phone home is imported (onnxruntime's native telemetry,
# huggingface_hub's): every cud-bench module, worker process and child inherits them.
for _switch in ("ORT_DISABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ[_switch] = "1"

__version__ = "0.1.0"
