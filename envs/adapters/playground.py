"""MuJoCo Playground's environments (`playground:ID`, e.g. `playground:CartpoleBalance`).

Playground's environments share brax's `State` (`reset(rng)`, `step(state, action)`, `done`),
and take their time limit from brax's `EpisodeWrapper` in Playground's own training code; the
adapter is brax's (envs/adapters/brax.py), with `max_steps_in_episode` defaulting to the
environment's `episode_length` (1000 for the dm_control suite). The simulation defaults to
`impl="jax"` (MJX in JAX), which runs about 50x faster on a CPU than Playground's default Warp
(../shared/specs/suites.md); `config_overrides` passes any other setting through.
Locomotion and manipulation tasks fetch MuJoCo Menagerie from the network when first loaded.
"""

from envs.adapters.base import TimeLimitParams
from envs.adapters.brax import BraxStateEnv


class PlaygroundEnv(BraxStateEnv):
    suite_name = "playground"


def make(name: str, max_steps_in_episode: int | None = None, config_overrides: dict | None = None):
    from mujoco_playground import registry

    if name not in registry.ALL_ENVS:
        raise ValueError(f"playground:{name} is not a MuJoCo Playground environment; accepted: "
                         f"{', '.join('playground:' + n for n in registry.ALL_ENVS)}")
    overrides = {"impl": "jax", **(config_overrides or {})}
    suite_env = registry.load(name, config_overrides=overrides)
    limit = max_steps_in_episode or int(registry.get_default_config(name).episode_length)
    env = PlaygroundEnv(name, suite_env, TimeLimitParams(max_steps_in_episode=limit))
    return env, env.default_params
