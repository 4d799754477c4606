"""Getting a model out of zoo: ONNX verified by onnxruntime, int8 included (:mod:`.onnx`), and Hugging Face
Hub repositories (:mod:`.huggingface`, imported on use)."""

from .onnx import *  # noqa: F403
from .onnx import __all__  # noqa: F401
