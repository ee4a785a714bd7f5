"""superpos-kernels: fused SuperPos-Prompt soft-prompt tuning for frozen language models.

``get_superpos_model(model, SuperPosConfig(...))`` wraps a frozen Hugging Face model (forward, generate, Trainer,
PEFT export); ``SuperPosPrompt`` is the drop-in layer under it; :func:`superpos_embed` is the fused op it
calls (gather + prompt superposition + concatenation), with Triton, C++/CUDA and pure-PyTorch backends.
"""

__version__ = "0.1.0"

from .config import SuperPosConfig
from .errors import SuperPosInputError
from .layer import CONFIG_NAME, WEIGHTS_NAME, SuperPosPrompt, sample_token_ids
from .model import SuperPosModel, get_superpos_model
from .ops import available_backends, last_backend, select_backend, superpos_embed
from .reference import extend_attention_mask, superpos_embed_reference, superpose

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "SuperPosConfig",
    "SuperPosInputError",
    "SuperPosModel",
    "SuperPosPrompt",
    "__version__",
    "available_backends",
    "extend_attention_mask",
    "get_superpos_model",
    "last_backend",
    "sample_token_ids",
    "select_backend",
    "superpos_embed",
    "superpos_embed_reference",
    "superpose",
]
