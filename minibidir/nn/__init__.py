"""Neural-network layers with PyTorch's names, constructor arguments and state-dict layouts."""
from .module import Parameter, Module, ModuleList, ModuleDict, Sequential
from .linear import Linear, Identity
from .embedding import Embedding
from .dropout import Dropout
from .norm import LayerNorm
from .activation import ReLU, GELU, Tanh, Sigmoid, Softmax, LogSoftmax
from . import init
