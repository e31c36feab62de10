"""Observations as pytrees: the features networks read, and the legal-action mask some carry.

An environment's observation may be one array (CartPole) or any pytree of arrays: a dict, a
NamedTuple (Jumanji's grid, step count and action mask), a dataclass. The default networks read
every leaf, its trailing (per-environment) axes flattened, cast to float32 and concatenated in
the pytree's leaf order. A leaf named `action_mask` (boolean, one entry per discrete action) also
restricts a categorical policy to the actions it marks legal: in rollouts, losses, entropies,
KL terms and evaluation alike, since all of them read the policy's logits through it.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp

MASK_FIELD = "action_mask"
# The logit an illegal action gets: exp(-1e9) is exactly 0 in float32, so it is never sampled
# and adds nothing to an entropy or a KL term, and, unlike -inf, `0 * logit` stays 0.
MASKED_LOGIT = -1e9


def feature_ndims(obs_spec) -> tuple[int, ...]:
    """The per-environment rank of each leaf of one (unbatched) observation, in leaf order."""
    return tuple(len(leaf.shape) for leaf in jax.tree.leaves(obs_spec))


def flatten(obs, ndims: tuple[int, ...]) -> jax.Array:
    """One float32 feature vector per observation: `(*batch, features)` for any batch axes.

    `ndims` are `feature_ndims` of one observation; the axes before them are batch axes.
    """
    leaves = jax.tree.leaves(obs)
    if len(leaves) != len(ndims):
        raise ValueError(f"observation has {len(leaves)} leaves; the network was built for {len(ndims)}")
    flat = [x.reshape(x.shape[: x.ndim - n] + (-1,)).astype(jnp.float32) for x, n in zip(leaves, ndims)]
    return flat[0] if len(flat) == 1 else jnp.concatenate(flat, axis=-1)


def action_mask(obs):
    """The observation's `action_mask` field (a Mapping key or an attribute), or None."""
    if isinstance(obs, Mapping):
        return obs.get(MASK_FIELD)
    return getattr(obs, MASK_FIELD, None)


def mask_logits(logits, mask):
    """`logits` with the actions `mask` marks illegal set to `MASKED_LOGIT`.

    If an observation marks no action legal (some suites do so in a terminal state, which is
    never acted on), its policy is uniform over all actions rather than undefined.
    """
    legal = mask.astype(bool) | ~jnp.any(mask.astype(bool), axis=-1, keepdims=True)
    return jnp.where(legal, logits, MASKED_LOGIT)


def stack(a, b):
    """Two observation pytrees stacked leaf by leaf on a new leading axis."""
    return jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
