"""Optional extras: what each needs, whether it is installed, and the one error that
names the install command when it is not.

Installed-ness is looked up without importing (``importlib.util.find_spec``): a cached
corpus never needs pyarrow, and ``slt list`` never pays for matplotlib.
"""

from __future__ import annotations

import importlib.util

from slt_cli.errors import SltError

# extra -> (module, the package pip installs), as pyproject.toml's optional-dependencies
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "gislr": (("pyarrow", "pyarrow"),),
    "pose": (("pose_format", "pose-format"),),
    "onnx": (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("onnxscript", "onnxscript")),
    "plot": (("matplotlib", "matplotlib"),),
    "tune": (("optuna", "optuna"),),
    "tensorboard": (("tensorboard", "tensorboard"),),  # [run] log_to, via torch's SummaryWriter
    "mlflow": (("mlflow", "mlflow-skinny"),),  # [run] log_to; the full mlflow package works too
    "video": (("mediapipe", "mediapipe"), ("cv2", "opencv-contrib-python")),
}


def installed(module: str) -> bool:
    """Whether a top-level module can be imported (None in sys.modules means no)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str, purpose: str, error: type[SltError] = SltError) -> None:
    """Raises ``error`` naming what is missing and the command that installs ``extra``.

    Args:
        extra: A key of ``EXTRAS``.
        purpose: What needs it, e.g. "reading .pose files".
        error: The error class the caller's layer raises (DataError, ...).
    """
    missing = [package for module, package in EXTRAS[extra] if not installed(module)]
    if missing:
        raise error(f"{purpose} needs {', '.join(missing)}, which "
                    f"{'is' if len(missing) == 1 else 'are'} not installed",
                    hint=f"Install the extra: pip install 'slt[{extra}]' "
                         f"(from a clone: pip install -e \".[{extra}]\").")
