"""A learned reward r_phi(obs, action), trained with the Bradley-Terry loss on preferences.

Bradley-Terry models the probability that action a is preferred over b in the same state as
sigmoid(r_phi(s, a) - r_phi(s, b)); training minimises the cross-entropy between that and the
rater's label. Rewards are identified only up to a constant (and, with noise-free labels, up to
a growing scale), which is all a policy-gradient trainer needs: REINFORCE standardises its
returns and GRPO its group advantages.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpg.algos.minibatch import fit_minibatches
from jaxpg.algos.rlhf.data import Preferences
from jaxpg.core.networks import MLP, orthogonal


class RewardModel(nn.Module):
    """An MLP on the concatenated observation and scaled action; one scalar per pair.

    `action_scale` divides the action (use the action bound, e.g. SearchRanking's a_max = 5) so
    both inputs are of order one. Shapes: `(..., obs_dim), (..., action_dim) -> (...)`.
    """

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    action_scale: float = 1.0

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action / self.action_scale], axis=-1).astype(jnp.float32)
        x = MLP(self.hidden_sizes, self.activation)(x)
        return nn.Dense(1, kernel_init=orthogonal(1.0))(x)[..., 0]


def bradley_terry_loss(params, model: RewardModel, pairs: Preferences):
    """Mean cross-entropy between the labels and sigmoid(r(s, a) - r(s, b)): a scalar."""
    margin = model.apply(params, pairs.obs, pairs.action_a) - model.apply(params, pairs.obs, pairs.action_b)
    return jnp.mean(-pairs.label * jax.nn.log_sigmoid(margin) - (1.0 - pairs.label) * jax.nn.log_sigmoid(-margin))


def pairwise_accuracy(params, model: RewardModel, pairs: Preferences):
    """Fraction of pairs, ties (label 0.5) excluded, where the model ranks the preferred action
    higher: a scalar."""
    margin = model.apply(params, pairs.obs, pairs.action_a) - model.apply(params, pairs.obs, pairs.action_b)
    decided = pairs.label != 0.5
    correct = (margin > 0) == (pairs.label > 0.5)
    return jnp.sum(decided & correct) / jnp.maximum(jnp.sum(decided), 1)


def train_reward_model(key, model: RewardModel, pairs: Preferences, num_updates: int = 2000,
                       batch_size: int = 256, lr=1e-3):
    """Fits `model` to `pairs` with Adam on minibatches drawn with replacement.

    Args:
      key: PRNG key (initialisation and minibatches); vmap over it for seeds.
      model: the `RewardModel`.
      pairs: training `Preferences` (leading axis M).
      num_updates, batch_size: static positive integers.
      lr: Adam's learning rate; may be traced.

    Returns:
      `(params, losses)`: the fitted parameters and the `(num_updates,)` minibatch losses.
    """
    init_key, batch_key = jax.random.split(key)
    params = model.init(init_key, pairs.obs[:1], pairs.action_a[:1])
    loss = lambda p, batch: bradley_terry_loss(p, model, batch)
    return fit_minibatches(batch_key, params, loss, pairs, num_updates, batch_size, lr)


def reward_function(model: RewardModel, params):
    """`reward(obs, action) -> r_phi(obs, action)`, for `envs.wrappers.LearnedReward`."""
    return lambda obs, action: model.apply(params, obs, action)
