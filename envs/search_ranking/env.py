"""The gymnax `Environment`, its state and parameters, the expert policy and `make`."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.gymnax_api import environment, spaces

from ..autoreset import AutoResetEnv
from .ranking import (
    base_scores,
    estimate_theta,
    position_bias,
    rank,
    rich_aggregates,
    simulate_session,
)
from .world import (
    CONTEXT_DRAWS,
    QUERY_DRAWS,
    Catalog,
    Context,
    context_from_uniforms,
    make_catalog,
    normal,
    uniform_draws,
    with_query,
)

# Expert boost templates, one per segment (rows follow SEGMENTS, columns follow FEATURES), chosen
# by measured mean reward per segment (4 catalogs x 16k episodes; zero action -> template):
# price hunters rarely buy at any ranking, cheapest-first helps a little (0.00 -> 0.13); PL lovers
# want private label (5.0 -> 12.4); premium users buy expensive, high-margin items (20.1 -> 97.2);
# litter-heavy users also favour private label (4.5 -> 7.2; boosting strategic litter margin
# instead measured lower: 5.7 with private label, 3.0 alone).
EXPERT_TEMPLATES = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0, -5.0, 0.0, 0.0, 0.0, 0.0],  # price hunter: cheapest first
    [0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # PL lover: private label
    [1.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0],  # premium: expensive, high margin
    [0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # litter-heavy: private label
], np.float32)


@struct.dataclass
class EnvState(environment.EnvState):
    context: Context
    aggregates: jax.Array  # (8,) standardised top-k aggregates ('rich'); zeros for 'raw'
    last_clicks: jax.Array  # of the previous session in this episode (0 at the first)
    last_satisfaction: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    catalog: Catalog = None
    pos_bias: jax.Array = None  # (3, top_k) examination logits by query type
    a_max: float = 5.0
    w_gmv: float = 1.0
    w_cm2: float = 0.4
    w_strategic: float = 2.0
    w_clicks: float = 0.1
    return_base_rate: float = 0.35
    return_click_weight: float = 0.2
    return_satisfaction_weight: float = 0.15
    max_steps_in_episode: int = 1


def session_reward(params: EnvParams, outcome: dict[str, jax.Array]) -> jax.Array:
    """GMV + 0.4 cm2 + 2.0 strategic buys + 0.1 clicks, weights from `params`: scalar."""
    return (
        params.w_gmv * outcome["gmv"]
        + params.w_cm2 * outcome["cm2"]
        + params.w_strategic * outcome["strategic_buys"]
        + params.w_clicks * outcome["clicks"]
    )


def return_probability(params: EnvParams, clicks: jax.Array, satisfaction: jax.Array) -> jax.Array:
    """Probability that the user comes back for another session (multi-session mode)."""
    p = params.return_base_rate
    return jax.nn.sigmoid(
        jnp.log(p / (1.0 - p))
        + params.return_click_weight * clicks
        + params.return_satisfaction_weight * satisfaction
    )


class SearchRanking(AutoResetEnv[EnvState, EnvParams]):
    """Search ranking: a 10-dim boost action re-ranks a catalog for a sampled user and query.

    Static structure: `n_products`, `top_k`, `observation` ("rich" or "raw"), `multi_session`.
    Everything numeric, the catalog included, is in `EnvParams`; `default_params` builds it from
    `catalog_seed`, `a_max` and `max_sessions`.
    """

    # Churn is drawn in `step_env`: a user who churns in the last allowed session terminates
    # the episode, and only an episode that would have gone on is truncated (and should be
    # bootstrapped from `info["final_observation"]`).
    truncated_excludes_terminated = True

    def __init__(
        self, n_products: int = 10_000, top_k: int = 20, observation: str = "rich",
        multi_session: bool = False, catalog_seed: int = 0, a_max: float = 5.0,
        max_sessions: int = 20,
    ):
        super().__init__()
        self.n_products = n_products
        self.top_k = top_k
        self.observation = observation
        self.multi_session = multi_session
        self._param_options = (catalog_seed, a_max, max_sessions)
        self._default_params = None

    @property
    def default_params(self) -> EnvParams:
        if self._default_params is None:
            catalog_seed, a_max, max_sessions = self._param_options
            self._default_params = EnvParams(
                catalog=make_catalog(jax.random.PRNGKey(catalog_seed), self.n_products),
                pos_bias=jnp.asarray(position_bias(self.top_k), jnp.float32),
                a_max=jnp.float32(a_max),
                max_steps_in_episode=jnp.int32(max_sessions if self.multi_session else 1),
            )
        return self._default_params

    def _obs_draws(self) -> dict[str, tuple[int, ...]]:
        return {"obs_noise": (self.n_products,)} if self.observation == "rich" else {}

    def _aggregates(self, params: EnvParams, ctx: Context, u: dict[str, jax.Array]) -> jax.Array:
        if self.observation == "raw":
            return jnp.zeros(8, jnp.float32)
        base = base_scores(params.catalog, ctx, normal(u["obs_noise"]))
        return rich_aggregates(params.catalog, base, self.top_k)

    def reset_env(self, key, params):
        u = uniform_draws(key, **CONTEXT_DRAWS, **self._obs_draws())
        ctx = context_from_uniforms(u)
        state = EnvState(
            time=jnp.int32(0),
            context=ctx,
            aggregates=self._aggregates(params, ctx, u),
            last_clicks=jnp.float32(0.0),
            last_satisfaction=jnp.float32(0.0),
        )
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        draws = {"rank_noise": (self.n_products,), "session": (4, self.top_k)}
        if self.multi_session:
            draws.update(stay=(), **QUERY_DRAWS, **self._obs_draws())
        u = uniform_draws(key, **draws)
        ctx = state.context
        action = jnp.clip(action, -params.a_max, params.a_max)
        ranking = rank(params.catalog, ctx, action, normal(u["rank_noise"]), self.top_k)
        outcome = simulate_session(params.catalog, params.pos_bias, ctx, ranking, u["session"])
        reward = session_reward(params, outcome)
        if self.multi_session:
            p_return = return_probability(params, outcome["clicks"], outcome["satisfaction"])
            terminated = u["stay"] >= p_return
            ctx = with_query(ctx, u)
            aggregates = self._aggregates(params, ctx, u)
        else:
            terminated = jnp.bool_(True)
            aggregates = state.aggregates
        state = EnvState(
            time=state.time + 1,
            context=ctx,
            aggregates=aggregates,
            last_clicks=outcome["clicks"],
            last_satisfaction=outcome["satisfaction"],
        )
        return self.get_obs(state, params), state, reward, terminated, outcome

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        ctx = state.context
        segment = jax.nn.one_hot(ctx.segment, 4)
        query_type = jax.nn.one_hot(ctx.query_type, 3)
        if self.observation == "raw":
            parts = [jax.nn.one_hot(ctx.query_category, 4), query_type, segment]
        else:
            thetas = estimate_theta(jnp.stack([ctx.theta_price, ctx.theta_pl]))
            parts = [segment, query_type, thetas, state.aggregates]
        if self.multi_session:
            parts.append(jnp.stack([state.last_clicks, state.last_satisfaction]))
        return jnp.concatenate(parts).astype(jnp.float32)

    def is_terminated(self, state, params) -> jax.Array:
        # Churn is drawn in `step_env`; a single-session episode always ends after its step.
        return jnp.bool_(not self.multi_session)

    @property
    def name(self) -> str:
        return "SearchRanking-v0"

    @property
    def num_actions(self) -> int:
        return 10

    @property
    def obs_dim(self) -> int:
        return (11 if self.observation == "raw" else 17) + 2 * self.multi_session

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        a_max = (params or self.default_params).a_max
        return spaces.Box(-a_max, a_max, (10,), jnp.float32)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_dim,), jnp.float32)

    def references(self, params: EnvParams, act=None) -> dict:
        """Reference policies to score on a run's evaluation episodes (the optional hook `jaxpg`
        reads; see `jaxpg.references`): the zero action (no boost) and the expert template of
        the observed segment (`expert_action`). No exact values: the simulator has no closed form.
        """
        zero = lambda obs, key: jnp.zeros(obs.shape[:-1] + (10,), jnp.float32)
        expert = lambda obs, key: expert_action(obs, self)
        return {"values": {}, "policies": {"zero action": zero, "expert template": expert}}


def expert_action(obs: jax.Array, env: SearchRanking) -> jax.Array:
    """A template policy: the boost template (`EXPERT_TEMPLATES`) of the observed user segment.

    Args:
      obs: (..., obs_dim) observations of `env`, in any observation and episode mode.
      env: the `SearchRanking` that produced them; its `observation` locates the segment one-hot.

    Returns:
      (..., 10) actions.
    """
    start = 7 if env.observation == "raw" else 0
    # Full precision, as the env's own products: a reference must not depend on the device.
    return jnp.matmul(obs[..., start : start + 4], jnp.asarray(EXPERT_TEMPLATES),
                      precision=jax.lax.Precision.HIGHEST)


_DEFAULTS = dict(catalog_seed=0, n_products=10_000, top_k=20, a_max=5.0, observation="rich",
                 multi_session=False, max_sessions=20)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def make(**overrides: Any) -> tuple[SearchRanking, EnvParams]:
    """`envs.make("SearchRanking-v0", **overrides)` -> `(env, env_params)`.

    Options: catalog_seed=0, n_products=10_000, top_k=20, a_max=5.0, observation="rich" or
    "raw", multi_session=False, max_sessions=20 (multi-session episodes are truncated after it;
    only with multi_session=True).
    """
    unknown = sorted(set(overrides) - set(_DEFAULTS))
    if unknown:
        raise ValueError(
            f"SearchRanking-v0: unknown option(s) {unknown}; accepted: {list(_DEFAULTS)}"
        )
    o = {**_DEFAULTS, **overrides}
    checks = [
        ("catalog_seed", _is_int(o["catalog_seed"]), "an integer"),
        ("top_k", _is_int(o["top_k"]) and o["top_k"] >= 1, "an integer >= 1"),
        ("n_products",
         _is_int(o["n_products"]) and _is_int(o["top_k"]) and o["n_products"] >= o["top_k"],
         f"an integer >= top_k ({o['top_k']})"),
        ("a_max", isinstance(o["a_max"], (int, float)) and o["a_max"] > 0, "a number > 0"),
        ("observation", o["observation"] in ("rich", "raw"), "'rich' or 'raw'"),
        ("multi_session", isinstance(o["multi_session"], bool), "True or False"),
        ("max_sessions", _is_int(o["max_sessions"]) and o["max_sessions"] >= 1, "an integer >= 1"),
    ]
    for field, ok, accepted in checks:
        if not ok:
            raise ValueError(f"SearchRanking-v0: {field} must be {accepted}, got {o[field]!r}")
    # max_sessions is the only option that one mode ignores; passing it there is a mistake.
    if "max_sessions" in overrides and not o["multi_session"]:
        raise ValueError("SearchRanking-v0: max_sessions needs multi_session=True (single-session "
                         "episodes are one session long)")
    env = SearchRanking(
        n_products=int(o["n_products"]), top_k=int(o["top_k"]), observation=o["observation"],
        multi_session=o["multi_session"], catalog_seed=int(o["catalog_seed"]),
        a_max=float(o["a_max"]), max_sessions=int(o["max_sessions"]),
    )
    return env, env.default_params
