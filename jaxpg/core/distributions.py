"""Action distributions: from network outputs to log-probs, entropies, samples and env actions.

A policy network emits `outputs` (logits, a mean, or Beta concentrations) and, for the Gaussian
families, a state-independent `log_std`. An `ActionHead` turns them into a distribution over
*raw* actions, the values stored in rollouts and scored by `log_prob`, and maps raw actions to
what the environment receives with `to_env`:

| family               | raw action          | env action                         |
|----------------------|---------------------|------------------------------------|
| `categorical`        | index               | the index                          |
| `gaussian`           | Gaussian sample     | clipped to the action bounds       |
| `fixed_std_gaussian` | Gaussian sample     | clipped to the action bounds       |
| `squashed_gaussian`  | pre-tanh sample u   | low + (tanh(u) + 1) (high - low)/2 |
| `beta`               | x in (0, 1)         | low + x (high - low)               |

Keeping the raw value (rather than the env action) makes every log-prob exact: a clipped
Gaussian action would lose its density, and atanh of a saturated tanh is infinite. The
log-probs of `squashed_gaussian` and `beta` are densities of the *env* action (they include
the change-of-variables terms), so they can be compared with any other density on that space.
"""

import dataclasses
import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from envs.gymnax_api import spaces

DISTRIBUTIONS = ("categorical", "gaussian", "fixed_std_gaussian", "squashed_gaussian", "beta")
CONTINUOUS = DISTRIBUTIONS[1:]
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
# The stds a learned log_std can start from: exp of the bounds above.
INIT_STD_RANGE = (math.exp(LOG_STD_MIN), math.exp(LOG_STD_MAX))
# Beta samples are kept this far inside (0, 1): float32 sampling can return exactly 0 or 1,
# whose log-density is infinite.
_BETA_EPS = 1e-6


def clamp_log_std(log_std):
    """`log_std` clipped to [LOG_STD_MIN, LOG_STD_MAX] in value, with gradient 1 everywhere.

    A plain `jnp.clip` has zero gradient outside its bounds, so a log_std that got there would
    never learn its way back. Inside the bounds the value is `log_std` itself, bit for bit
    (`x - x` is exactly 0 for finite x); outside it is exactly the bound.
    """
    return jax.lax.stop_gradient(jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)) + (
        log_std - jax.lax.stop_gradient(log_std)
    )


def check_init_std(init_std, kind: str | None) -> None:
    """Refuses an `init_std` that a learned log_std would clamp, for the kinds that learn it
    (`gaussian`, `squashed_gaussian`, and None, which picks `gaussian` for Box actions);
    `ValueError` naming the range. `fixed_std_gaussian` uses its std as given."""
    low, high = INIT_STD_RANGE
    if kind in (None, "gaussian", "squashed_gaussian") and not low <= init_std <= high:
        raise ValueError(
            f"init_std={init_std:g} is out of range; accepted: [{low:g}, {high:g}] (exp({LOG_STD_MIN:g}) to "
            f"exp({LOG_STD_MAX:g}), the bounds of the learned log_std), or any std > 0 with "
            "distribution='fixed_std_gaussian'"
        )


@dataclasses.dataclass(frozen=True)
class ActionHead:
    """A static (hashable) description of a policy's action distribution.

    Attributes:
      kind: one of `DISTRIBUTIONS`.
      action_dim: number of discrete actions (categorical) or the action vector's length.
      low, high: action bounds as tuples (continuous kinds), possibly infinite for Gaussians.
      init_std: the fixed std of `fixed_std_gaussian`, and the initial std of `gaussian` and
        `squashed_gaussian`.
      action_shape: the shape the environment expects for one action.
    """

    kind: str
    action_dim: int
    low: tuple = ()
    high: tuple = ()
    init_std: float = 1.0
    action_shape: tuple = ()

    @property
    def num_outputs(self) -> int:
        """How many numbers the policy network's last layer emits per observation."""
        return 2 * self.action_dim if self.kind == "beta" else self.action_dim

    @property
    def learns_log_std(self) -> bool:
        return self.kind in ("gaussian", "squashed_gaussian")

    @property
    def _low(self):
        return jnp.asarray(self.low, jnp.float32)

    @property
    def _high(self):
        return jnp.asarray(self.high, jnp.float32)

    def _std(self, log_std):
        if self.kind == "fixed_std_gaussian":
            return jnp.full((self.action_dim,), self.init_std, jnp.float32)
        return jnp.exp(clamp_log_std(log_std))

    def distribution(self, outputs, log_std) -> distrax.Distribution:
        """The distribution over raw actions; batch shape `outputs.shape[:-1]`."""
        if self.kind == "categorical":
            return distrax.Categorical(logits=outputs)
        if self.kind == "beta":
            # softplus + 1 keeps both concentrations above 1: a unimodal density.
            alpha, beta = jnp.split(jax.nn.softplus(outputs) + 1.0, 2, axis=-1)
            return distrax.Independent(distrax.Beta(alpha, beta), 1)
        std = jnp.broadcast_to(self._std(log_std), outputs.shape)
        return distrax.MultivariateNormalDiag(outputs, std)

    def _log_jacobian(self, raw):
        """log |d env_action / d raw| summed over action dimensions."""
        if self.kind == "squashed_gaussian":
            half_range = (self._high - self._low) / 2.0
            # log(1 - tanh(u)^2) written stably as 2 (log 2 - u - softplus(-2u)).
            log_dtanh = 2.0 * (jnp.log(2.0) - raw - jax.nn.softplus(-2.0 * raw))
            return jnp.sum(log_dtanh + jnp.log(half_range), axis=-1)
        if self.kind == "beta":
            return jnp.sum(jnp.log(self._high - self._low)) * jnp.ones(raw.shape[:-1])
        return jnp.zeros(raw.shape[:-1] if self.kind != "categorical" else raw.shape)

    def log_prob(self, outputs, log_std, raw):
        """Log-density of the env action that `raw` maps to; shape `outputs.shape[:-1]`."""
        return self.distribution(outputs, log_std).log_prob(raw) - self._log_jacobian(raw)

    def entropy(self, outputs, log_std):
        """Entropy of the env-action distribution; shape `outputs.shape[:-1]`.

        For `squashed_gaussian` this is the entropy of the pre-tanh Gaussian plus the affine
        rescaling: an upper bound on the true entropy, since tanh only contracts. It has no
        closed form and this bound is the usual regulariser.
        """
        entropy = self.distribution(outputs, log_std).entropy()
        if self.kind == "squashed_gaussian":
            return entropy + jnp.sum(jnp.log((self._high - self._low) / 2.0))
        if self.kind == "beta":
            return entropy + jnp.sum(jnp.log(self._high - self._low))
        return entropy

    def sample(self, outputs, log_std, key):
        """Draws raw actions and their log-probs; shapes `outputs.shape[:-1] (+ (dim,))`."""
        raw = self.distribution(outputs, log_std).sample(seed=key)
        if self.kind == "beta":
            raw = jnp.clip(raw, _BETA_EPS, 1.0 - _BETA_EPS)
        return raw, self.log_prob(outputs, log_std, raw)

    def mode(self, outputs, log_std):
        """The most likely raw action (argmax, the mean, or the Beta mode)."""
        if self.kind == "categorical":
            return jnp.argmax(outputs, axis=-1)
        if self.kind == "beta":
            alpha, beta = jnp.split(jax.nn.softplus(outputs) + 1.0, 2, axis=-1)
            return jnp.clip((alpha - 1.0) / (alpha + beta - 2.0 + 1e-8), _BETA_EPS, 1 - _BETA_EPS)
        return outputs

    def to_env(self, raw):
        """Maps raw actions to the environment's action space (the documented rule above)."""
        if self.kind == "categorical":
            return raw
        if self.kind == "squashed_gaussian":
            action = self._low + (jnp.tanh(raw) + 1.0) * (self._high - self._low) / 2.0
        elif self.kind == "beta":
            action = self._low + raw * (self._high - self._low)
        else:
            action = jnp.clip(raw, self._low, self._high)
        return action.reshape(raw.shape[:-1] + self.action_shape)


def make_action_head(action_space, kind: str | None = None, init_std: float = 1.0) -> ActionHead:
    """Chooses the action head for a gymnax action space.

    Args:
      action_space: a gymnax `spaces.Discrete` or `spaces.Box`.
      kind: one of `DISTRIBUTIONS`; `None` picks `categorical` for Discrete, `gaussian` for Box.
      init_std: initial (or, for `fixed_std_gaussian`, fixed) action std; must be > 0, and within
        `INIT_STD_RANGE` where the std is learned.
    """
    if kind is not None and kind not in DISTRIBUTIONS:
        raise ValueError(f"distribution={kind!r} is unknown; accepted: {', '.join(DISTRIBUTIONS)}")
    if not init_std > 0:
        raise ValueError(f"init_std={init_std} must be > 0")
    if isinstance(action_space, spaces.Discrete):
        if kind not in (None, "categorical"):
            raise ValueError(
                f"distribution={kind!r} needs a continuous (Box) action space, but this "
                f"environment's actions are Discrete({action_space.n}); accepted: categorical"
            )
        return ActionHead("categorical", int(action_space.n))
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"action space {type(action_space).__name__} is not supported; accepted: "
            "Discrete (categorical) and Box (continuous distributions)"
        )
    kind = kind or "gaussian"
    if kind == "categorical":
        raise ValueError(
            "distribution='categorical' needs a Discrete action space, but this environment's "
            f"actions are continuous; accepted: {', '.join(CONTINUOUS)}"
        )
    check_init_std(init_std, kind)
    shape = tuple(action_space.shape)
    dim = int(np.prod(shape)) if shape else 1
    low = np.broadcast_to(np.asarray(action_space.low, np.float32), shape).reshape(dim)
    high = np.broadcast_to(np.asarray(action_space.high, np.float32), shape).reshape(dim)
    if kind in ("squashed_gaussian", "beta") and not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(
            f"distribution={kind!r} maps onto the action bounds, which must be finite; this "
            f"space has low={low.tolist()}, high={high.tolist()}; accepted: gaussian, "
            "fixed_std_gaussian"
        )
    return ActionHead(kind, dim, tuple(low.tolist()), tuple(high.tolist()), float(init_std), shape)
