"""``bitrobust bench``: bitrobust against the peer tools, same work, same process, interleaved.

Tasks (:mod:`bitrobust.bench.tasks`): ``inject_p1``, ``inject_p0.1``, ``inject_p0.01`` (one
random bit-error pattern at p = 1 %, 0.1 %, 0.01 % → faulty float weights of the 1.86 M-parameter
MNIST ``mlp``, 8-bit rquant), ``inject_p0.01_10M`` (a 10 M-parameter MLP, against the bare
``limit`` only), ``campaign100`` (100 patterns × 10k MNIST test images: RErr), ``approx_lenet5``
and ``approx_mlp`` (10k images through the emulated ``mul8u_L40`` accelerator vs the float model
and the exact uint8 table), ``randbet_epoch`` (one RandBET epoch vs a normal one).

Contenders and what each does (:mod:`bitrobust.bench.contenders`): ``limit`` is a bare
vectorised numpy reference of the same injection; pytorchfi 0.6.0 has no weight bit-flip model,
so it runs a per-weight int8 flip function through ``declare_weight_fi`` (one Python call per
fault, weights only, no biases); MRFI 2.1.0 flips one random bit of int8 values chosen by rate,
with its own symmetric quantizer, at most one flip per weight, and re-injects on every forward
(so a campaign runs each pattern as one batch). Timing and memory: :mod:`bitrobust.bench.runner`.

The peer tools are optional (a missing one is skipped with a notice). MRFI declares torchvision
(and so a CUDA torch) as a dependency but never imports it; install both without dependencies::

    pip install --no-deps mrfi==2.1.0 pytorchfi==0.6.0 && pip install pyyaml scipy
"""

from bitrobust.bench.runner import run_suite
from bitrobust.bench.tasks import TASKS, Settings

__all__ = ["TASKS", "Settings", "run_suite"]
