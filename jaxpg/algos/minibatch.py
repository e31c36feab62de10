"""Supervised fitting on minibatches drawn with replacement: what SFT and the reward model share."""

import jax
import numpy as np
import optax


def fit_minibatches(key, params, loss_fn, data, num_updates: int, batch_size: int, lr):
    """Minimises `loss_fn(params, batch)` with Adam over `num_updates` random minibatches.

    Args:
      key: PRNG key for the minibatch rows.
      params: initial parameters.
      loss_fn: `(params, batch) -> scalar`; `batch` is `data` indexed by the minibatch rows.
      data: a pytree of arrays with a shared leading axis.
      num_updates, batch_size: static positive integers.
      lr: Adam's learning rate; may be traced.

    Returns:
      `(params, losses)` with `losses` the `(num_updates,)` minibatch losses.
    """
    for name, value in (("num_updates", num_updates), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    optimizer = optax.adam(lr)
    num_rows = jax.tree.leaves(data)[0].shape[0]

    def update(carry, step_key):
        params, opt_state = carry
        rows = jax.random.randint(step_key, (batch_size,), 0, num_rows)
        loss, grads = jax.value_and_grad(loss_fn)(params, jax.tree.map(lambda x: x[rows], data))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(
        update, (params, optimizer.init(params)), jax.random.split(key, num_updates)
    )
    return params, losses
