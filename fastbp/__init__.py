"""fastbp: dense neural networks trained by backpropagation with compiled, fused Numba kernels."""

from fastbp._interrupt import TrainingInterruptedWarning
from fastbp._jit import CompileCacheWarning
from fastbp.estimators import MLPClassifier, MLPRegressor
from fastbp.network import DivergenceError, Network, Workspace
from fastbp.onnx_export import register_skl2onnx, to_onnx
from fastbp.optimizers import SGD, Adam
from fastbp.persistence import ModelFileError, load, save

__version__ = "0.1.0"
__all__ = [
    "Adam",
    "CompileCacheWarning",
    "DivergenceError",
    "MLPClassifier",
    "MLPRegressor",
    "ModelFileError",
    "Network",
    "SGD",
    "TrainingInterruptedWarning",
    "Workspace",
    "__version__",
    "load",
    "register_skl2onnx",
    "save",
    "to_onnx",
]
