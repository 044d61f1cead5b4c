"""The paper's LIF neuron, built from spikingjelly (METHOD.md, "Neuron").

``v = decay * v + x``; spike when ``v >= 1``; hard reset to 0 (or soft reset ``v -= 1``);
the reset is not detached; surrogate gradient sigmoid with alpha 4. In spikingjelly terms:
``LIFNode(tau=1/(1-decay), decay_input=False, v_threshold=1.0, v_reset=0.0 | None)``.

Under bf16/fp16 autocast the membrane state stays in fp32 by default (:class:`LIF`): bf16 resolves
only 1/128 near the threshold, and on the CPU spikingjelly's fp32 path is its fast one.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import nn

from snnkd_cli.errors import SnnkdError, option


class LIF(neuron.LIFNode):
    """spikingjelly's ``LIFNode`` whose state and dynamics stay in fp32 under autocast.

    ``fp32_state = False`` gives spikingjelly's own behaviour (the state in the input's dtype).
    Spikes are exactly 0/1 either way; here they come out as fp32 and the next layer's autocast
    casts them back.
    """

    fp32_state: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, ...]`` input currents -> spikes of the same shape."""
        if self.fp32_state and x.dtype in (torch.bfloat16, torch.float16):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x.float())
        return super().forward(x)

    def functional_forward(self, inputs: tuple, states: tuple, **kwargs: object) -> tuple[tuple, tuple]:
        """The explicit-state forward (``(x [T, B, ...],), (v,) -> (spikes,), (v,)``) that spikingjelly's
        ``memopt`` checkpoints call instead of :meth:`forward`: the state in fp32 under autocast as there."""
        x = inputs[0]
        if self.fp32_state and x.dtype in (torch.bfloat16, torch.float16):
            with torch.autocast(x.device.type, enabled=False):
                return super().functional_forward((x.float(), *inputs[1:]), states, **kwargs)
        return super().functional_forward(inputs, states, **kwargs)


def make_lif(decay: float = 0.5, soft_reset: bool = False) -> LIF:
    """A multi-step LIF layer: ``[T, B, ...]`` input currents -> ``[T, B, ...]`` spikes.

    Args:
        decay: membrane leak per step, in (0, 1); 0.5 for CIFAR/DVS, 0.2 for ImageNet.
        soft_reset: subtract the threshold after a spike instead of resetting to 0.
    """
    if not 0.0 < decay < 1.0:
        raise SnnkdError(f"{option('decay')} must be in (0, 1), got {decay}")
    return LIF(
        tau=1.0 / (1.0 - decay),
        decay_input=False,
        v_threshold=1.0,
        v_reset=None if soft_reset else 0.0,
        detach_reset=False,
        surrogate_function=surrogate.Sigmoid(alpha=4.0),
        step_mode="m",
    )


def set_neuron_precision(model: nn.Module, precision: str) -> int:
    """``"fp32"``: every :class:`LIF` of ``model`` keeps fp32 state under autocast; ``"autocast"``: the
    state follows the input's dtype (spikingjelly's default). Returns the number of neurons set."""
    layers = [m for m in model.modules() if isinstance(m, LIF)]
    for m in layers:
        m.fp32_state = precision == "fp32"
    return len(layers)
