"""CartPole-v1 with Gymnasium's exact dynamics, as a gymnax `Environment`.

Gymnasium's rules, which we keep: explicit Euler update in the order x, x_dot, theta,
theta_dot; termination when |x| > 2.4 or |theta| > 12 degrees; reward 1.0 on every step, the
terminating one included; truncation after 500 steps; reset uniform in [-0.05, 0.05]^4.
(gymnax's own CartPole gives reward 0 on the step after termination and reward 1 otherwise,
which only differs once an episode has already ended.)
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.gymnax_api import environment, spaces

from .autoreset import AutoResetEnv


@struct.dataclass
class EnvState(environment.EnvState):
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length, as in Gymnasium
    force_mag: float = 10.0
    tau: float = 0.02
    theta_threshold_radians: float = 12 * 2 * 3.141592653589793 / 360
    x_threshold: float = 2.4
    max_steps_in_episode: int = 500


class CartPole(AutoResetEnv[EnvState, EnvParams]):
    """CartPole-v1: push a cart left (0) or right (1) to keep its pole upright."""

    # The dynamics draw nothing, so the whole step key goes to the auto-reset: the split the
    # shared step would otherwise make is a large part of a step this cheap.
    step_env_draws = False

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key, state, action, params):
        del key  # the dynamics are deterministic
        force = jnp.where(action == 1, params.force_mag, -params.force_mag)
        total_mass = params.masspole + params.masscart
        polemass_length = params.masspole * params.length
        costheta = jnp.cos(state.theta)
        sintheta = jnp.sin(state.theta)
        temp = (force + polemass_length * state.theta_dot**2 * sintheta) / total_mass
        thetaacc = (params.gravity * sintheta - costheta * temp) / (
            params.length * (4.0 / 3.0 - params.masspole * costheta**2 / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        state = EnvState(
            x=state.x + params.tau * state.x_dot,
            x_dot=state.x_dot + params.tau * xacc,
            theta=state.theta + params.tau * state.theta_dot,
            theta_dot=state.theta_dot + params.tau * thetaacc,
            time=state.time + 1,
        )
        terminated = self.is_terminated(state, params)
        reward = jnp.ones((), jnp.float32)
        return self.get_obs(state), state, reward, terminated, {}

    def reset_env(self, key, params):
        # The reset runs on every step (auto-reset selects it when an episode ends), so its
        # random draw is most of the step's cost. `uniform(key, (4,))` spends one threefry block
        # per float; `split` yields four 32-bit words from two blocks. They become floats in
        # [-0.05, 0.05) by the same mantissa trick `jax.random.uniform` uses.
        bits = jax.random.key_data(jax.random.split(key)).reshape(-1)[:4].astype(jnp.uint32)
        unit = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0
        init = unit * 0.1 - 0.05
        state = EnvState(
            x=init[0], x_dot=init[1], theta=init[2], theta_dot=init[3],
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot])

    def is_terminated(self, state, params) -> jax.Array:
        return jnp.logical_or(
            jnp.abs(state.x) > params.x_threshold,
            jnp.abs(state.theta) > params.theta_threshold_radians,
        )

    @property
    def name(self) -> str:
        return "CartPole-v1"

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        high = jnp.array(
            [
                params.x_threshold * 2,
                jnp.finfo(jnp.float32).max,
                params.theta_threshold_radians * 2,
                jnp.finfo(jnp.float32).max,
            ]
        )
        return spaces.Box(-high, high, (4,), jnp.float32)


def make(**overrides: Any):
    """`envs.make("CartPole-v1", **overrides)`: overrides are `EnvParams` fields."""
    env = CartPole()
    params = env.default_params
    unknown = sorted(set(overrides) - set(params.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"CartPole-v1: unknown parameter(s) {unknown}; "
            f"accepted: {sorted(params.__dataclass_fields__)}"
        )
    return env, params.replace(**overrides)
