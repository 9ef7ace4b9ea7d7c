"""minibidir: a from-scratch deep-learning library in NumPy (CuPy on a GPU) that teaches
bidirectional encoders, decoders and attention, masked-language-model pretraining and
bidirectional fine-tuning."""
from . import backend
from .backend import (use_backend, get_backend, manual_seed, set_default_dtype,
                      get_default_dtype, to_numpy, get_array_module, cupy_available)
from .autograd import (Tensor, Function, no_grad, enable_grad, is_grad_enabled,
                       detect_anomaly, tensor, zeros, ones, zeros_like, ones_like, randn, rand,
                       arange, full, from_numpy)
from . import functional
from . import functional as F
from .gradcheck import gradcheck, GradcheckError
from . import nn

__version__ = "0.1.0"
