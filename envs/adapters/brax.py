"""brax's environments (`brax:ID`, e.g. `brax:inverted_pendulum`, `brax:ant`).

A brax environment has no time limit of its own; brax's trainers add one with `EpisodeWrapper`,
which sets `info["truncation"]` when the limit ends an episode that did not end by itself. The
adapter does the same from `env_params.max_steps_in_episode` (default 1000, brax's training
default), so the limit is a parameter a sweep can vary. `terminated` is brax's `done`.
MuJoCo Playground's environments share brax's `State` and use this adapter too.

Options: `backend` (brax's: "generalized", "positional", "spring", "mjx"; brax's default when
omitted), `max_steps_in_episode`, and any keyword brax's environment class accepts.
"""

import jax.numpy as jnp

from envs.adapters.base import SuiteEnv, TimeLimitParams, counted_step, start
from envs.gymnax_api import spaces


class BraxStateEnv(SuiteEnv):
    """An environment with brax's `reset(rng) -> State` and `step(State, action) -> State`."""

    suite_name = "brax"
    # brax's step draws nothing; the whole step key goes to the auto-reset.
    step_env_draws = False

    def reset_env(self, key, params):
        inner = self.suite_env.reset(key)
        return inner.obs, start(inner)

    def step_env(self, key, state, action, params):
        del key
        inner = self.suite_env.step(state.inner, action)
        terminated = jnp.asarray(inner.done).astype(bool)
        state = counted_step(state, inner, terminated, params)
        return inner.obs, state, jnp.asarray(inner.reward, jnp.float32), terminated, {}

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, (self.suite_env.observation_size,), jnp.float32)

    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (self.suite_env.action_size,), jnp.float32)


def make(name: str, max_steps_in_episode: int = 1000, **options):
    from brax import envs as brax_envs

    if name not in brax_envs._envs:
        raise ValueError(f"brax:{name} is not a brax environment; accepted: "
                         f"{', '.join('brax:' + n for n in sorted(brax_envs._envs))}")
    suite_env = brax_envs.get_environment(name, **options)
    env = BraxStateEnv(name, suite_env, TimeLimitParams(max_steps_in_episode=max_steps_in_episode))
    return env, env.default_params
