"""The pure core: no SUMO, no HTTP, no clock. Time is always an argument.

The modules on the per-tick path (:data:`controller.core.accel.MODULES`) may also be compiled
from these very sources with mypyc (``greenwave accel``): when a build of the current sources
exists it is imported instead of the Python files (see :mod:`controller.core.accel`), unless
``GREENWAVE_PURE=1``. Behaviour is the same; only the speed differs.
"""

from controller.core import accel as _accel

COMPILED: bool = _accel.install(__path__)
