"""StatelessCartPole-v1: CartPole-v1 with only the cart's position and the pole's angle observed.

POPGym's partially observed CartPole (Morad et al. 2023): the velocities are hidden, so a policy
must infer them from successive observations; a feed-forward policy sees one snapshot. The
dynamics, rewards, termination and 500-step limit are CartPole-v1's (`envs.cartpole`), and so is
the auto-reset step; only the observation differs. `envs.wrappers.MaskObservation` hides entries
of any other environment's observation the same way.
"""

from typing import Any

import jax
import jax.numpy as jnp

from envs import cartpole
from envs.gymnax_api import spaces

# Indices into CartPole's observation (x, x_dot, theta, theta_dot).
OBSERVED = (0, 2)


class StatelessCartPole(cartpole.CartPole):
    def get_obs(self, state, params=None, key=None) -> jax.Array:
        return jnp.stack([state.x, state.theta])

    @property
    def name(self) -> str:
        return "StatelessCartPole-v1"

    def observation_space(self, params) -> spaces.Box:
        full = super().observation_space(params)
        keep = jnp.asarray(OBSERVED)
        return spaces.Box(full.low[keep], full.high[keep], (len(OBSERVED),), jnp.float32)


def make(**overrides: Any):
    """`envs.make("StatelessCartPole-v1", **overrides)`: overrides are CartPole's `EnvParams` fields."""
    _, params = cartpole.make(**overrides)
    return StatelessCartPole(), params
