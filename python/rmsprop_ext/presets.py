"""Named option sets: each peer library's RMSProp defaults and math, for ``RMSprop(params, lr=...,
**presets[name])`` (and the functional and numpy APIs). The learning rate is always the caller's.

Every preset is checked against the library itself in tests/test_peers.py (timm, Keras 3, optax).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = ["presets"]

_PRESETS: dict[str, dict[str, Any]] = {
    # torch.optim.RMSprop: rmsprop_ext's defaults, bit for bit.
    "torch": {},
    # TensorFlow 1 tf.train.RMSPropOptimizer (ApplyRMSProp): accumulator starts at 1, eps inside
    # the square root, the learning rate inside the momentum buffer.
    "tf1": {
        "alpha": 0.9,
        "eps": 1e-10,
        "eps_in_sqrt": True,
        "initial_square_avg": 1.0,
        "lr_in_momentum": True,
    },
    # Keras 3 keras.optimizers.RMSprop: rho 0.9, epsilon 1e-7 inside the root, lr in the momentum,
    # its weight_decay shrinks the weights (decoupled).
    "keras": {
        "alpha": 0.9,
        "eps": 1e-7,
        "eps_in_sqrt": True,
        "lr_in_momentum": True,
        "decoupled_weight_decay": True,
    },
    # timm's RMSpropTF: TF1's math in torch (square_avg starts at 1, lr_in_momentum=True).
    "timm": {
        "alpha": 0.9,
        "eps": 1e-10,
        "eps_in_sqrt": True,
        "initial_square_avg": 1.0,
        "lr_in_momentum": True,
    },
    # optax.rmsprop: decay 0.9, eps 1e-8 inside the root (eps_in_sqrt=True), optax.trace momentum
    # after the learning rate; nesterov= and bias_correction= pass through as options.
    "optax": {
        "alpha": 0.9,
        "eps": 1e-8,
        "eps_in_sqrt": True,
        "lr_in_momentum": True,
    },
    # The textbook (Dive into Deep Learning, 12.8): gamma 0.9, eps 1e-6 inside the root.
    "textbook": {"alpha": 0.9, "eps": 1e-6, "eps_in_sqrt": True},
}

presets: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {name: MappingProxyType(options) for name, options in _PRESETS.items()}
)
