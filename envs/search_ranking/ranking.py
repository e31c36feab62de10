"""Scoring, ranking and the cascade user: pure functions of a catalog, a context and draws."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .world import EMB_DIM, SPECIFICITY, Catalog, Context, normal

FEATURES = (
    "cm2", "discount", "is_pl", "personalisation", "bestseller", "price",
    "cm2_litter", "discount_x_theta_price", "pl_x_theta_pl", "specificity_x_bestseller",
)

# Relevance: LEX[query category, product category] = log1p(shared category-name tokens).
_W_SEM, _W_LEX, BASE_NOISE_STD = 0.7, 0.3, 0.05
_LEX = np.log1p(np.array([[2, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64))

# User behaviour.
_ALPHA_REL, _ALPHA_PRICE, _ALPHA_PL, _ALPHA_CAT, _SIGMA_U = 1.0, 0.8, 1.2, 0.6, 0.8
_BETA_BUY, _BETA0, _W_PRICE_PENALTY = 1.2, 0.3, 0.01
_SAT_DECAY, _SAT_GAIN, _ABANDON_BELOW, _MAX_PURCHASES, _FATIGUE = 0.2, 0.5, -2.0, 3, 1.2
_EXAM_SENSITIVITY = 0.2
POS_BIAS = np.array([  # examination logits by query type, positions 0..19
    [1.2, 0.9, 0.7, 0.5, 0.3] + [0.2] * 15,
    [1.5, 0.8, 0.5, 0.3, 0.2] + [0.1] * 15,
    [1.0, 0.8, 0.6, 0.4, 0.2] + [0.1] * 15,
])

# Every product here runs at full float32 precision: GPUs otherwise default to TF32 for float32
# matmuls, whose 10-bit mantissa would change scores, rankings and rewards from the CPU's.
_dot = partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)

# The 'rich' observation standardises its 8 top-k aggregates with the original's constants.
_AGG_MEAN = np.array([30.0, 15.0, 0.3, 0.1, 0.5, 0.2, 300.0, 5.0])
_AGG_STD = np.array([20.0, 10.0, 0.2, 0.1, 0.3, 0.2, 200.0, 2.0])


def _base_weights(ctx: Context) -> jax.Array:
    """Weights (20,) of the base score on `Catalog.basis[:, :20]` (unit embedding, category)."""
    phi_unit = ctx.phi_emb / jnp.linalg.norm(ctx.phi_emb)
    lex = jnp.asarray(_LEX, jnp.float32)[ctx.query_category]
    return jnp.concatenate([_W_SEM * phi_unit, _W_LEX * lex])


def _boost_weights(catalog: Catalog, ctx: Context, action: jax.Array):
    """Weights (22,) of the boost on `Catalog.basis[:, 20:]`, and its constant offset."""
    a = action
    specificity = jnp.asarray(SPECIFICITY, jnp.float32)[ctx.query_type]
    # A column c * f(p) z-scores to sign(c) * z(f) (to 0 when c = 0, the std-1 rule), so those
    # three columns fold into the weights of the catalog columns they scale.
    w_static = jnp.stack([
        a[0],
        a[1] + jnp.sign(ctx.theta_price) * a[7],
        a[2] + jnp.sign(ctx.theta_pl) * a[8],
        a[4] + jnp.sign(specificity) * a[9],
        a[5],
        a[6],
    ])
    var = _dot(_dot(ctx.theta_emb, catalog.embedding_cov), ctx.theta_emb)
    std = jnp.where(var > 0.0, jnp.sqrt(var), 1.0)
    w_emb = a[3] / std * ctx.theta_emb
    return jnp.concatenate([w_static, w_emb]), _dot(w_emb, catalog.embedding_mean)


def base_scores(catalog: Catalog, ctx: Context, noise: jax.Array) -> jax.Array:
    """Base scores 0.7 cos(phi, e_p) + 0.3 LEX[query cat, cat_p] + 0.05 noise: (n,).

    `noise` (n,) holds standard normals.
    """
    # The slice of the shared basis is taken once per call, not per env. Zero-padding the weights
    # to the whole basis instead made XLA split the product and constant-fold the zero half,
    # (n_products x N) at compile time: seconds per call site at N = 1,024.
    return _scores(catalog.basis[:, : EMB_DIM + 4], _base_weights(ctx)) + BASE_NOISE_STD * noise


def _scores(basis: jax.Array, w: jax.Array) -> jax.Array:
    """basis (n, d) @ w (d,): (n,), written so that one vmapped call is one GEMM into (N, n).

    With the per-env weights on the left, vmap makes the product (N, d) x (d, n), whose output is
    laid out as the noise, the top k and the aggregates read it; `basis @ w` gave an (n, N)
    output that every consumer then read transposed, which cost more than the product itself.
    The barrier keeps XLA from splitting a product with concatenated weights and a constant
    basis (a catalog closed over by jit) into one product per piece, each writing its own
    (N, n) output.
    """
    return _dot(jax.lax.optimization_barrier(w), basis.T)


def boost_scores(catalog: Catalog, ctx: Context, action: jax.Array) -> jax.Array:
    """z-scored features (n, 10) @ action (10,), without materialising the features: (n,)."""
    w, offset = _boost_weights(catalog, ctx, action)
    return _dot(catalog.basis[:, EMB_DIM + 4 :], w) - offset


def feature_matrix(catalog: Catalog, ctx: Context) -> jax.Array:
    """The ten raw boost features (`FEATURES`) of every product, materialised: (n, 10)."""
    specificity = jnp.asarray(SPECIFICITY, jnp.float32)[ctx.query_type]
    return jnp.stack([
        catalog.cm2, catalog.discount, catalog.is_pl, _dot(catalog.embedding, ctx.theta_emb),
        catalog.bestseller, catalog.price, catalog.cm2 * catalog.strategic,
        catalog.discount * ctx.theta_price, catalog.is_pl * ctx.theta_pl,
        specificity * catalog.bestseller,
    ], axis=1)


def standardize(features: jax.Array) -> jax.Array:
    """Column z-scores over the catalog, a zero-std column getting std 1: (n, d) -> (n, d)."""
    std = features.std(axis=0)
    return (features - features.mean(axis=0)) / jnp.where(std == 0.0, 1.0, std)


def rank(catalog: Catalog, ctx: Context, action: jax.Array, noise: jax.Array, top_k: int):
    """Product indices (top_k,) by descending base + boost score; `action` (10,) is not clipped."""
    w_boost, _ = _boost_weights(catalog, ctx, action)  # a constant offset leaves the order alone
    w = jnp.concatenate([_base_weights(ctx), w_boost])
    return top_k_indices(_scores(catalog.basis, w) + BASE_NOISE_STD * noise, top_k)


def top_k_indices(x: jax.Array, k: int) -> jax.Array:
    """Indices (k,) of the k largest entries of x (n,) in descending order, as `lax.top_k`.

    Two small top-k passes replace one over all n: x is cut into G groups of g consecutive
    entries (g about sqrt(n / k)), and every entry of the top k lies in a group whose maximum is
    among the k largest group maxima (a group below those has k groups above it, each holding an
    entry larger than all of its own), so the top k of those k groups' k * g entries is the top
    k of all. Group maxima are a cheap vectorised reduction, and `lax.top_k` over G and k * g
    (a few hundred) entries costs far less than over n. Exact ties, which the score noise makes
    improbable, may come out in another order than `lax.top_k`'s lower-index-first.
    """
    n = x.shape[-1]
    g = _group_size(n, k)
    if g < 2:
        return jax.lax.top_k(x, k)[1]
    groups = -(-n // g)
    if g * groups > n:
        x = jnp.pad(x, (0, g * groups - n), constant_values=-jnp.inf)
    _, best_groups = jax.lax.top_k(x.reshape(groups, g).max(axis=1), k)
    # The candidates are gathered from x by flat index, not as rows of the reshaped x: with a
    # reshape as x's only consumer, XLA split the score noise's normal quantile over three
    # loops (each storing a catalog-sized intermediate) instead of one.
    candidates = (best_groups[:, None] * g + jnp.arange(g)).reshape(-1)  # (k * g,)
    return candidates[jax.lax.top_k(x[candidates], k)[1]]


def _group_size(n: int, k: int) -> int:
    """Group size g for `top_k_indices`: about sqrt(n / k), which balances the two passes; a
    divisor of n within a factor 1.5 of that if there is one (padding n to a multiple of g costs
    a copy of x); 1 (a single pass) when grouping would not pay or leave fewer than k groups."""
    best = math.sqrt(n / k)
    divisors = [d for d in range(max(2, math.ceil(best / 1.5)), math.floor(best * 1.5) + 1)
                if n % d == 0]
    g = min(divisors, key=lambda d: abs(d - best)) if divisors else round(best)
    return g if g >= 2 and -(-n // g) >= k else 1


def rich_aggregates(catalog: Catalog, base: jax.Array, top_k: int) -> jax.Array:
    """The 8 standardised aggregates of the 'rich' observation over the base-score top k: (8,).

    Average price, std price, average cm2, discount, private-label and strategic fractions,
    average bestseller and average base score.
    """
    idx = top_k_indices(base, top_k)
    top_base = base[idx]
    price = catalog.price[idx]
    raw = jnp.stack([
        price.mean(), price.std(), catalog.cm2[idx].mean(), catalog.discount[idx].mean(),
        catalog.is_pl[idx].mean(), catalog.strategic[idx].mean(), catalog.bestseller[idx].mean(),
        top_base.mean(),
    ])
    return ((raw - _AGG_MEAN) / _AGG_STD).astype(jnp.float32)


def estimate_theta(theta: jax.Array) -> jax.Array:
    """The original's coarse preference estimate clip(round(0.7 theta * 2) / 2, -3, 3)."""
    return jnp.clip(jnp.round(0.7 * theta * 2.0) / 2.0, -3.0, 3.0)


def position_bias(top_k: int) -> np.ndarray:
    """Examination logits (3, top_k); positions past the 20 listed reuse the last (the original)."""
    pad = np.repeat(POS_BIAS[:, -1:], max(0, top_k - POS_BIAS.shape[1]), axis=1)
    return np.concatenate([POS_BIAS, pad], axis=1)[:, :top_k]


def simulate_session(
    catalog: Catalog, pos_bias: jax.Array, ctx: Context, ranking: jax.Array, u: jax.Array
) -> dict[str, jax.Array]:
    """Runs the cascade user down `ranking` (top_k,) product indices.

    Args:
      pos_bias: (3, top_k) examination logits by query type.
      u: (4, top_k) uniforms in (0, 1): utility noise (through the normal quantile), then the
        examine, click and buy draws of each position.

    Returns:
      float32 scalars: clicks, purchases, gmv, cm2 (summed over buys), strategic_buys and
      satisfaction (at the session's end).
    """
    price = catalog.price[ranking]
    log_price = jnp.log1p(price)
    cos = _dot(catalog.basis[ranking, :EMB_DIM], ctx.phi_emb / jnp.linalg.norm(ctx.phi_emb))
    utility = (
        _ALPHA_REL * cos
        + _ALPHA_PRICE * ctx.theta_price * log_price
        + _ALPHA_PL * ctx.theta_pl * catalog.is_pl[ranking]
        + _ALPHA_CAT * ctx.theta_cat[catalog.category[ranking]]
        + _SIGMA_U * normal(u[0])
    )
    p_click = jax.nn.sigmoid(utility)
    p_buy = jax.nn.sigmoid(_BETA_BUY * utility + _BETA0 - _W_PRICE_PENALTY * log_price)

    def position(carry, x):
        active, sat, n_buys = carry
        bias, util, pc, pb, u_exam, u_click, u_buy = x
        examined = active & (u_exam <= jax.nn.sigmoid(bias + _EXAM_SENSITIVITY * sat))
        clicked = examined & (u_click < pc)
        bought = clicked & (u_buy < pb)
        sat = sat + jnp.where(clicked, _SAT_GAIN * util, jnp.where(examined, -_SAT_DECAY, 0.0))
        sat = sat - jnp.where(bought, _FATIGUE, 0.0)
        n_buys = n_buys + bought
        # Not examining ends the session, as do the purchase limit and low satisfaction.
        active = examined & (n_buys < _MAX_PURCHASES) & (sat >= _ABANDON_BELOW)
        return (active, sat, n_buys), (clicked, bought)

    xs = (pos_bias[ctx.query_type], utility, p_click, p_buy, u[1], u[2], u[3])
    init = (jnp.bool_(True), jnp.float32(0.0), jnp.int32(0))
    (_, sat, _), (clicks, buys) = jax.lax.scan(position, init, xs)
    buys = buys.astype(jnp.float32)
    return {
        "clicks": clicks.sum(dtype=jnp.float32),
        "purchases": buys.sum(),
        "gmv": _dot(buys, price),
        "cm2": _dot(buys, catalog.cm2[ranking]),
        "strategic_buys": _dot(buys, catalog.strategic[ranking]),
        "satisfaction": sat,
    }
