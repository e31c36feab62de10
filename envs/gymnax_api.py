"""gymnax's API modules (`environment`, `spaces`, `GymnaxWrapper`) without gymnax's package import.

`import gymnax` runs `gymnax/__init__.py`, which imports every gymnax environment, and with them
matplotlib.pyplot and seaborn (for Pong's and the grid worlds' renderers) and builds arrays,
starting a JAX backend: about 3 s on 2 cores, a third of `jaxpg train CartPole-v1`'s start-up,
for modules our own environments never use. So the packages `gymnax`, `gymnax.environments`
and `gymnax.wrappers` are registered here without running their `__init__`; their submodules
import as usual, and the first other attribute looked up on a package (`gymnax.make`,
`gymnax.registered_envs`, `gymnax.environments.CartPole`) runs its real `__init__`, so code that
imports gymnax itself sees the whole of it.
"""

import importlib
import importlib.util
import sys


def _defer_init(name: str) -> None:
    """Registers package `name` in `sys.modules` with its `__init__` not yet run."""
    if name in sys.modules:  # already imported (whole, or deferred by an earlier call)
        return
    spec = importlib.util.find_spec(name)
    package = importlib.util.module_from_spec(spec)

    def __getattr__(attr):
        submodule = f"{name}.{attr}"
        if not attr.startswith("__") and importlib.util.find_spec(submodule) is not None:
            return importlib.import_module(submodule)
        del package.__getattr__  # run the real __init__ once, into this same module object
        spec.loader.exec_module(package)
        return getattr(package, attr)

    package.__getattr__ = __getattr__
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)


for _name in ("gymnax", "gymnax.environments", "gymnax.wrappers"):
    _defer_init(_name)

from gymnax.environments import environment, spaces  # noqa: E402
from gymnax.wrappers.purerl import GymnaxWrapper  # noqa: E402

gymnax = sys.modules["gymnax"]  # whole on first use: `gymnax.make`, `gymnax.registered_envs`

__all__ = ["environment", "spaces", "GymnaxWrapper", "gymnax"]
