"""fastbp: dense neural networks trained by backpropagation with compiled, fused Numba kernels."""

from fastbp._interrupt import TrainingInterruptedWarning
from fastbp._jit import CompileCacheWarning
from fastbp.estimators import MLPClassifier, MLPRegressor
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.losses import LOSSES
from fastbp.network import DivergenceError, Network, Workspace
from fastbp.onnx_export import register_skl2onnx, to_onnx
from fastbp.optimizers import OPTIMIZERS, SGD, Adam
from fastbp.persistence import ModelFileError, load, save

__version__ = "0.1.0"
__all__ = [
    "ACTIVATIONS",
    "Adam",
    "CompileCacheWarning",
    "DivergenceError",
    "LOSSES",
    "MLPClassifier",
    "MLPRegressor",
    "ModelFileError",
    "Network",
    "OPTIMIZERS",
    "SGD",
    "TrainingInterruptedWarning",
    "Workspace",
    "__version__",
    "load",
    "register_skl2onnx",
    "save",
    "to_onnx",
]
