"""JAX's persistent compilation cache, as the CLI uses it, and a count of its hits.

The cache only serves programs without host callbacks (a callback's address enters the cache
key), which is why `jaxpg.fit` reports progress between compiled chunks rather than from inside
them.
"""

import contextlib
import os

import jax

ENV_VAR = "JAXPG_COMPILATION_CACHE"


def default_directory() -> str:
    """`$JAXPG_COMPILATION_CACHE`, else `$XDG_CACHE_HOME/jaxpg/xla` (`~/.cache/jaxpg/xla`)."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxpg", "xla")


# What `enabled` sets: every program is cached, however quick to compile or small.
_SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0.0, "jax_persistent_cache_min_entry_size_bytes": 0}


@contextlib.contextmanager
def enabled(directory: str | None = None, on: bool = True):
    """Turns the persistent cache on for every program while the block runs, yielding its folder
    (None when `on` is False), and puts JAX's settings back afterwards, so a command run inside a
    longer process (a notebook, a test) leaves the process as it found it."""
    if not on:
        yield None
        return
    directory = directory or default_directory()
    os.makedirs(directory, exist_ok=True)
    settings = {"jax_compilation_cache_dir": directory, **_SETTINGS}
    before = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    try:
        yield directory
    finally:
        for name, value in before.items():
            jax.config.update(name, value)


class ProcessListener:
    """One instance per process of a listener to JAX's monitoring events (`get()`): JAX has no
    way to unregister a listener, so the first one made serves the whole process."""

    @classmethod
    def get(cls):
        if cls.__dict__.get("_instance") is None:  # one per subclass
            cls._instance = cls()
            cls._instance.register()
        return cls._instance


class CacheHits(ProcessListener):
    """Counts persistent-cache hits and misses from JAX's monitoring events while alive."""

    def __init__(self):
        self.hits = self.misses = 0

    def register(self) -> None:
        jax.monitoring.register_event_listener(self._on_event)

    def _on_event(self, event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.hits += 1
        elif event == "/jax/compilation_cache/cache_misses":
            self.misses += 1

    def snapshot(self) -> tuple[int, int]:
        return self.hits, self.misses


# JAX's duration events for one program's way to an executable: tracing to a jaxpr, lowering to
# MLIR, XLA's compile (or, on a persistent-cache hit, the retrieval instead).
COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
    "/jax/compilation_cache/cache_retrieval_time_sec": "cache_read",
}


class CompileLog(ProcessListener):
    """Records, while alive, each program's trace, lower and compile seconds as JAX reports them
    (`[{"program", "stage", "seconds"}]`, in order), for `summary.json` and benchmarks/latency.py."""

    def __init__(self):
        self.events = []

    def register(self) -> None:
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            self.events.append({"program": kwargs.get("fun_name", "?"), "stage": COMPILE_EVENTS[event],
                                "seconds": float(duration)})
