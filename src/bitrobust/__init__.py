"""bitrobust: measure and improve how neural networks survive hardware faults.

The flow: quantize a model (``bitrobust.quant``), sample a fault pattern from a fault model and a
seed (``bitrobust.faults``), evaluate the faulty model (``bitrobust.evaluate``), and harden it
(``bitrobust.train``). See DESIGN.md for the architecture.
"""

from bitrobust.errors import BitrobustError

__version__ = "0.3.0"
__all__ = ["BitrobustError", "__version__"]
