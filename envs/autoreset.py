"""The one auto-resetting `step` that `envs`' own environments share.

`AutoResetEnv` is gymnax's `Environment` with gymnax's auto-reset `step`, plus two declared
switches a subclass sets as class attributes:

- `step_env_draws`: True (the default) splits `key` into a step key and a reset key, as gymnax
  does, so `step_env` gets a key of its own. An environment whose `step_env` draws nothing sets
  it to False: the whole key then goes to the reset and the split (a threefry call on every
  step, in an environment whose step may cost little more than that) is not made.
- `truncated_excludes_terminated`: True reports `truncated` only for an episode that did not
  also terminate, for environments whose termination is drawn in `step_env` and so cannot be
  known to `is_truncated`.
- `costly_reset`: True for an environment whose reset costs far more than its step (Craftax
  builds a world). Whatever counts only first episodes (evaluation in `envs.episodes`, and
  jaxpg's REINFORCE and GRPO rollouts) then steps it with `step_batch(num_resets=1)` rather than
  computing a reset in every environment at every step. It stays False elsewhere because the batch step is another XLA
  program, which may round differently from `vmap(step)`: a sweep's row and the same setting
  trained alone would no longer be sure to report the same evaluation.

The returned values and `info` keys are gymnax's: `(obs, state, reward, terminated, truncated,
info)`, with `info` holding `step_env`'s own entries and `terminated`, `truncated` and
`final_observation` (the observation before the reset, for bootstrapping on truncation).
"""

from functools import partial

import jax
import jax.numpy as jnp

from envs.gymnax_api import environment


def declared(env, name: str, default=None):
    """The class attribute `name` of `env` (`costly_reset`, `step_batch`), or `default`.

    The class is asked, not the instance: gymnax's wrappers pass unknown attributes through to
    the environment they wrap, whose batch step would skip the wrapper."""
    return getattr(type(env), name, default)


class AutoResetEnv(environment.Environment[environment.TEnvState, environment.TEnvParams]):
    """gymnax's `Environment` with `envs`' shared auto-reset `step` (see the module docstring)."""

    step_env_draws: bool = True
    truncated_excludes_terminated: bool = False
    costly_reset: bool = False

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        """One step; an episode that ends is replaced by a fresh one from `reset_env`.

        Args:
          key: PRNG key for this step (and for the reset, should the episode end).
          state, action: the environment's state and action.
          params: `EnvParams`; defaults to `default_params`.

        Returns:
          `(obs, state, reward, terminated, truncated, info)`; `obs` and `state` are the reset's
          where the episode ended, and `info["final_observation"]` is the step's observation.
        """
        if params is None:
            params = self.default_params
        obs_st, state_st, reward, terminated, truncated, info, key_reset = self._step_alone(key, state, action, params)
        obs_re, state_re = self.reset_env(key_reset, params)
        done = terminated | truncated
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
        obs = jax.tree.map(lambda r, s: jnp.where(done, r, s), obs_re, obs_st)
        return obs, state, reward, terminated, truncated, info

    def step_batch(self, keys, states, actions, params, num_resets: int):
        """`step` for a batch of N environments, drawing only `num_resets` (K) fresh episodes.

        Under `vmap`, `step` computes a reset in every environment at every step, because the
        select needs both branches; for an environment whose reset is costly (Craftax generates a
        world) that reset is most of the step. Here the environments that end at this step,
        taken in batch order, get the resets of the first K of them, each drawn with that
        environment's own key, as `step` draws it: so when at most K episodes end at a step, every
        end starts the episode `vmap(step)` would start. The j-th end beyond the K-th starts from
        a copy of the (j mod K)-th fresh episode.

        Args:
          keys, states, actions: one per environment, leading axis N.
          params: `EnvParams`, shared by the batch.
          num_resets: K, static, at least 1.

        Returns:
          `step`'s outputs, each batched on a leading axis N.
        """
        obs_st, state_st, reward, terminated, truncated, info, key_reset = jax.vmap(
            self._step_alone, in_axes=(0, 0, 0, None))(keys, states, actions, params)
        done = terminated | truncated
        enders = jnp.nonzero(done, size=num_resets, fill_value=0)[0]  # the first K ends, in batch order
        obs_re, state_re = jax.vmap(self.reset_env, in_axes=(0, None))(key_reset[enders], params)
        slot = (jnp.cumsum(done) - 1) % num_resets

        def take(fresh, stepped):
            return jnp.where(done.reshape(done.shape + (1,) * (stepped.ndim - 1)), fresh[slot], stepped)

        state = jax.tree.map(take, state_re, state_st)
        obs = jax.tree.map(take, obs_re, obs_st)
        return obs, state, reward, terminated, truncated, info

    def _step_alone(self, key, state, action, params):
        """`step_env` and the end's split, without the reset: `(obs, state, reward, terminated,
        truncated, info, reset_key)`, `info` already holding `step`'s own entries."""
        if self.step_env_draws:
            key_step, key_reset = jax.random.split(key)
        else:
            key_step = key_reset = key
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        if self.truncated_excludes_terminated:
            truncated = truncated & ~terminated
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
        return obs_st, state_st, reward, terminated, truncated, info, key_reset
