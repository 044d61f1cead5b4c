"""The paper's LIF neuron, built from spikingjelly (METHOD.md, "Neuron").

``v = decay * v + x``; spike when ``v >= 1``; hard reset to 0 (or soft reset ``v -= 1``);
the reset is not detached; surrogate gradient sigmoid with alpha 4. In spikingjelly terms:
``LIFNode(tau=1/(1-decay), decay_input=False, v_threshold=1.0, v_reset=0.0 | None)``.
"""

from __future__ import annotations

from spikingjelly.activation_based import neuron, surrogate

from snnkd_cli.errors import SnnkdError


def make_lif(decay: float = 0.5, soft_reset: bool = False) -> neuron.LIFNode:
    """A multi-step LIF layer: ``[T, B, ...]`` input currents -> ``[T, B, ...]`` spikes.

    Args:
        decay: membrane leak per step, in (0, 1); 0.5 for CIFAR/DVS, 0.2 for ImageNet.
        soft_reset: subtract the threshold after a spike instead of resetting to 0.
    """
    if not 0.0 < decay < 1.0:
        raise SnnkdError(f"--decay must be in (0, 1), got {decay}")
    return neuron.LIFNode(
        tau=1.0 / (1.0 - decay),
        decay_input=False,
        v_threshold=1.0,
        v_reset=None if soft_reset else 0.0,
        detach_reset=False,
        surrogate_function=surrogate.Sigmoid(alpha=4.0),
        step_mode="m",
    )
