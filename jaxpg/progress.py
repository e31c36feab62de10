"""A progress bar fed from inside the compiled training loop.

`report` is called in the body of the training `lax.scan`. It reaches the host only every
`total // 100` iterations (a `lax.cond` on the scan index, which is never batched), and under
`jax.vmap` it reaches it once per report with all seeds at once (`vmap_method="broadcast_all"`),
not once per seed. The host callback returns a zero that the caller adds into its state, so XLA
cannot prune it.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm


class _Bar:
    def __init__(self, total: int, steps_per_iteration: int, desc: str):
        self.total, self.steps_per_iteration, self.desc = total, steps_per_iteration, desc
        self.bar, self.started = None, 0.0

    def __call__(self, iteration, episode_return):
        iteration = np.asarray(iteration)
        i = int(iteration.reshape(-1)[0])
        if i == 0 or self.bar is None:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=self.total, desc=self.desc, unit="it", dynamic_ncols=True)
            self.started = time.perf_counter()
        num_runs = iteration.size
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(i + 1 - self.bar.n)
        self.bar.set_postfix(
            {
                "return": f"{np.nanmean(np.asarray(episode_return)):.1f}",
                "env steps/s": f"{(i + 1) * self.steps_per_iteration * num_runs / elapsed:.3g}",
            },
            refresh=False,
        )
        if i + 1 >= self.total:
            self.bar.close()
            self.bar = None
        return np.zeros(iteration.shape, np.int32)


def make_reporter(total: int, steps_per_iteration: int, desc: str):
    """Returns `report(iteration, episode_return) -> int32 zero` for the training scan body."""
    bar = _Bar(total, steps_per_iteration, desc)
    every = max(1, total // 100)

    def send(iteration, episode_return):
        return jax.pure_callback(
            bar, jax.ShapeDtypeStruct((), jnp.int32), iteration, episode_return,
            vmap_method="broadcast_all",
        )

    def report(iteration, episode_return):
        due = (iteration % every == 0) | (iteration == total - 1)
        return jax.lax.cond(
            due, send, lambda *_: jnp.zeros((), jnp.int32), iteration, episode_return
        )

    return report
