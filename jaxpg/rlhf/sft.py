"""Supervised fine-tuning (behaviour cloning) of a trainer's policy on demonstrations.

The policy is the trainer's own `PolicyNetwork` and action head, so the parameters it returns
can be handed to `jaxpg.make_trainer(..., policy_params=...)` to start RL from them (and to use
them as the frozen KL reference). The loss is the negative log-likelihood of the demonstrated
actions, so the learned std matches the demonstrations' spread.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpg.rlhf.data import Demonstrations

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
    if trainer.config["normalize_observations"]:
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
    for name, value in (("num_updates", num_updates), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    init_key, batch_key = jax.random.split(key)
    params = trainer.policy_net.init(init_key, demos.obs[:1])
    optimizer = optax.adam(lr)
    num_demos = demos.obs.shape[0]

    def update(carry, step_key):
        params, opt_state = carry
        rows = jax.random.randint(step_key, (batch_size,), 0, num_demos)
        batch = jax.tree.map(lambda x: x[rows], demos)
        loss, grads = jax.value_and_grad(policy_nll)(params, trainer, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(
        update, (params, optimizer.init(params)), jax.random.split(batch_key, num_updates)
    )
    return params, losses
