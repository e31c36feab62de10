"""Supervised fine-tuning (behaviour cloning) of a trainer's policy on demonstrations.

The policy is the trainer's own `PolicyNetwork` and action head, so the parameters it returns
can be handed to `jaxpg.make_trainer(..., policy_params=...)` to start RL from them (and to use
them as the frozen KL reference). The loss is the negative log-likelihood of the demonstrated
actions, so the learned std matches the demonstrations' spread.
"""

import jax
import jax.numpy as jnp

from jaxpg.rlhf.data import Demonstrations
from jaxpg.rlhf.fit import fit_minibatches

# Raw action == env action only for these heads (to_env merely clips); a squashed or Beta head
# would need the inverse of its squashing, which is infinite on the action bounds that
# demonstrations often sit on.
SFT_DISTRIBUTIONS = ("gaussian", "fixed_std_gaussian")


def check_trainer(trainer) -> None:
    """Raises `ValueError` naming the setting when `trainer`'s policy cannot be cloned."""
    if trainer.head.kind not in SFT_DISTRIBUTIONS:
        raise ValueError(
            f"distribution={trainer.head.kind!r} cannot be behaviour-cloned from env actions; "
            f"accepted: {', '.join(SFT_DISTRIBUTIONS)}"
        )
    if trainer.config.normalize_observations:
        raise ValueError(
            "normalize_observations=True: the SFT policy sees raw observations, so the trainer "
            "must too; accepted: False"
        )


def policy_nll(policy_params, trainer, demos: Demonstrations):
    """Mean negative log-likelihood of `demos.action` under the policy: a scalar (nats)."""
    outputs, log_std = trainer.policy_net.apply(policy_params, demos.obs)
    return -jnp.mean(trainer.head.log_prob(outputs, log_std, demos.action))


def behaviour_cloning(key, trainer, demos: Demonstrations, num_updates: int = 2000,
                      batch_size: int = 256, lr=1e-3):
    """Fits `trainer`'s policy to `demos` by negative log-likelihood with Adam.

    Args:
      key: PRNG key (initialisation as the trainer does it, and minibatches); vmap over it.
      trainer: any jaxpg trainer on the environment the demonstrations come from, with a
        Gaussian head (`SFT_DISTRIBUTIONS`) and `normalize_observations=False`.
      demos: `Demonstrations` (leading axis M).
      num_updates, batch_size: static positive integers; minibatches are drawn with replacement.
      lr: Adam's learning rate; may be traced.

    Returns:
      `(policy_params, nll)`: the policy parameters (the `params["policy"]` of a `TrainState`)
      and the `(num_updates,)` minibatch NLLs.
    """
    check_trainer(trainer)
    init_key, batch_key = jax.random.split(key)
    params = trainer.policy_net.init(init_key, demos.obs[:1])
    loss = lambda p, batch: policy_nll(p, trainer, batch)
    return fit_minibatches(batch_key, params, loss, demos, num_updates, batch_size, lr)
