"""Exact or reference results an environment offers, read through one optional, duck-typed hook.

An environment may define `references(env_params, act=None) -> {"values": {...}, "policies":
{...}}`: `values` are numbers (or nested lists) worth recording beside a run's evaluation (LQR's
Riccati gain and optimal return; with `act`, a deterministic policy `obs (N, ...) -> actions`,
facts about it such as its gain error); `policies` are reference policies `(obs, key) -> actions`
to score on the same evaluation episodes as the learned one (SearchRanking's zero action and
expert template). Wrappers forward the hook to the environment they wrap.
"""

import jax
import numpy as np

from jaxpg.core.evaluate import episode_returns


def references(env, env_params, act=None) -> dict:
    """The hook's `{"values", "policies"}`, empty when the environment offers none."""
    hook = getattr(env, "references", None)
    if hook is None:
        return {"values": {}, "policies": {}}
    found = hook(env_params, act)
    return {"values": dict(found.get("values", {})), "policies": dict(found.get("policies", {}))}


def score_policies(env, env_params, policies: dict, keys, num_episodes: int, max_steps=None) -> dict:
    """Mean undiscounted return of each reference policy over the episodes each of `keys` draws
    (the episodes `jaxpg.evaluate` meets with those keys)."""
    if max_steps is None:
        max_steps = int(getattr(env_params, "max_steps_in_episode", 1000))
    scored = {}
    for name, policy in policies.items():
        one = lambda k, p, policy=policy: episode_returns(env, p, policy, k, num_episodes, max_steps)
        returns = jax.jit(jax.vmap(one, in_axes=(0, None)))(keys, env_params)
        scored[name] = float(np.mean(np.asarray(returns)))
    return scored
