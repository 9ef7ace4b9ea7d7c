"""Neural-network layers with PyTorch's names, constructor arguments and state-dict layouts."""
from .module import Parameter, Module, ModuleList, ModuleDict, Sequential
from .linear import Linear, Identity
from .embedding import Embedding
from .dropout import Dropout
from .norm import LayerNorm
from .activation import ReLU, GELU, Tanh, Sigmoid, Softmax, LogSoftmax
from .recurrent import LSTMCell, LSTM
from . import init
from .positional import sinusoidal_positional_encoding, SinusoidalPositionalEncoding, LearnedPositionalEmbedding
from .attention import MultiheadAttention
from .transformer import (TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder,
                          TransformerDecoder, generate_square_subsequent_mask)
