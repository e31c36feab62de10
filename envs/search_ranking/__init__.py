"""SearchRanking-v0: a pure-JAX port of the Zoosim pet-supplies search simulator.

The full specification is `shared/specs/search_ranking.md`; every number is the spec's (read from
the original simulator, `VladPrytula/reinforcement_learning_search_from_scratch`, package
`zoosim`). An episode samples a user and a query; the action is a 10-dim boost vector (clipped to
[-a_max, a_max]) that weights z-scored product features on top of a noisy relevance score; the
top `top_k` products go to a cascade-style user, and the reward is
`GMV + 0.4 * sum(cm2 of buys) + 2.0 * strategic buys + 0.1 * clicks`, broken down in `info`
(gmv, cm2, strategic_buys, clicks, purchases, satisfaction: float32).

Observations (float32): 'raw' (11) = one-hots of query category (4), query type (3), segment (4);
'rich' (17) = segment (4), query type (3), estimated theta_price and theta_pl, and 8 standardised
aggregates over the base-score top k. Multi-session mode appends the last session's clicks and
satisfaction (2, unscaled as in the original; 0 at an episode's first session).

Choices where the spec leaves room (each follows the original where it has an answer):
- Base-score noise N(0, 0.05^2) is drawn afresh whenever base scores are computed, as the
  original does: once when the 'rich' observation is built and again, independently, when the
  action's ranking is scored. The observation's aggregates therefore describe a top-k list close
  to, but not always identical to, the one the action re-ranks.
- Features are z-scored without a per-env (n_products, 10) matrix. Seven columns are a catalog
  column times a per-context scalar c, which z-scores to sign(c) times the catalog column's
  z-score (0 when c = 0, as the std-1 rule gives); those catalog z-scores are precomputed once in
  float64. The personalisation column theta_emb . e_p is z-scored with the precomputed embedding
  mean and covariance: mean theta . mu, std sqrt(theta' C theta). Scoring is then one
  matrix-vector product with the catalog's (n_products, 42) basis, then an exact top k in two
  small passes (`top_k_indices`: group maxima, then the best groups' entries).
- Multi-session mode (the original's `MultiSessionEnv`): after each session the same user returns
  with probability sigmoid(logit(0.35) + 0.2 clicks + 0.15 sat) with a new query; otherwise the
  episode terminates. Episodes are truncated after `max_sessions` sessions (default 20; episodes
  average about 1.6 sessions, so truncation is rare); `truncated` is set only on an episode that
  would have gone on, so `terminated` and `truncated` never both hold.
- Positions past the 20 listed position biases reuse the last one, as the original does.
- Each reset and each step takes its random draws from one key (`world.uniform_draws`): bit for
  bit consecutive pieces of one `jax.random.uniform` draw, computed by JAX's Threefry written out
  in jnp ops (`world.threefry2x32`), because jax.random's XLA:CPU lowering runs it as a rolled
  loop several times slower; normals are the normal quantile of those uniforms, and the
  Dirichlet uses Marsaglia-Tsang with 8 proposals per gamma draw.

`expert_action(obs, env)` is a template policy (one boost template per observed segment) that
beats the zero action (about 19.5 against 5.3 mean reward); see `EXPERT_TEMPLATES`.
`envs.episodes.episode_returns(env, params, policy, key, num_episodes)` scores any policy on fresh
episodes with common random numbers, so two policies scored with one key are compared pair by pair.

Memory: the catalog lives once in `EnvParams` (7 product columns and the 42-column score basis,
49 * 4 * n_products bytes: 2.0 MB at 10,000 products), shared by all envs; nothing is copied per
env. One `EnvState` is 52 float32/int32 scalars, 208 bytes. A step's per-env temporaries are a
few float32 and uint32 vectors over the catalog (the noise draws, the scores; 'rich' adds the
next observation's base scores), so they, not the state, set how many envs fit in memory
(`benchmarks/env_throughput.py` reports them). Drawing and transforming the catalog-sized noise
(two vectors a step in 'rich' mode, one in 'raw') is most of a step's time on CPU.
"""

from .env import (
    EXPERT_TEMPLATES,
    EnvParams,
    EnvState,
    SearchRanking,
    expert_action,
    make,
    return_probability,
    session_reward,
)
from .ranking import (
    FEATURES,
    base_scores,
    boost_scores,
    estimate_theta,
    feature_matrix,
    position_bias,
    rank,
    rich_aggregates,
    simulate_session,
    standardize,
    top_k_indices,
)
from .world import (
    CATEGORIES,
    EMB_DIM,
    QUERY_TYPES,
    SEGMENTS,
    Catalog,
    Context,
    make_catalog,
    sample_context,
    sample_query,
    threefry2x32,
    uniform_draws,
)

__all__ = [
    "CATEGORIES", "EMB_DIM", "EXPERT_TEMPLATES", "FEATURES", "QUERY_TYPES", "SEGMENTS", "Catalog",
    "Context", "EnvParams", "EnvState", "SearchRanking", "base_scores", "boost_scores",
    "estimate_theta", "expert_action", "feature_matrix", "make", "make_catalog", "position_bias",
    "rank", "return_probability", "rich_aggregates", "sample_context", "sample_query",
    "session_reward", "simulate_session", "standardize", "threefry2x32", "top_k_indices",
    "uniform_draws",
]
