"""The simulated world: the catalog, users and queries, with the spec's constants.

Per-step randomness comes from `uniform_draws`: JAX's own Threefry-2x32 block function, written
out in jnp ops (`threefry2x32`), so the draws are bit for bit those of `jax.random.uniform`.
jax.random lowers the block function on XLA:CPU as a rolled 5-iteration loop (for compile time),
which stores every round's state in memory; a step draws two catalog-sized noise vectors per env,
and that loop was the largest part of a step's time. Unrolled, the 20 rounds are one vectorised
loop.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

CATEGORIES = ("dog_food", "cat_food", "litter", "toys")
SEGMENTS = ("price_hunter", "pl_lover", "premium", "litter_heavy")
QUERY_TYPES = ("category", "brand", "generic")
EMB_DIM = 16
STRATEGIC_CATEGORY = 2  # litter

# Catalog, by category.
CATEGORY_MIX = np.array([0.35, 0.35, 0.15, 0.15])
PRICE_MU = np.array([2.6, 2.5, 2.2, 1.8])
PRICE_SIGMA = np.array([0.4, 0.4, 0.35, 0.6])
MARGIN_SLOPE = np.array([0.12, 0.11, -0.03, 0.20])
MARGIN_NOISE = 0.3
PL_PROB = np.array([0.35, 0.40, 0.50, 0.15])
DISCOUNT_P_ZERO, DISCOUNT_LOW, DISCOUNT_HIGH = 0.7, 0.05, 0.3
BESTSELLER_MEAN = np.array([2.0, 2.2, 1.2, 0.8])
BESTSELLER_STD = np.array([0.7, 0.7, 0.5, 0.6])
EMB_CLUSTER_STD = np.array([0.7, 0.7, 0.5, 0.9])

# Users, by segment, and their queries.
SEGMENT_MIX = np.array([0.35, 0.25, 0.15, 0.25])
THETA_PRICE = np.array([[-3.5, 0.3], [-1.8, 0.2], [1.2, 0.25], [-1.0, 0.2]])  # mean, std
THETA_PL = np.array([[-1.0, 0.2], [3.2, 0.3], [-2.0, 0.2], [1.0, 0.2]])
CAT_CONCENTRATION = np.array(
    [[0.3, 0.3, 0.2, 0.2], [0.2, 0.45, 0.2, 0.15], [0.5, 0.25, 0.05, 0.2], [0.05, 0.05, 0.85, 0.05]]
)
QUERY_TYPE_MIX = np.array([0.6, 0.2, 0.2])
QUERY_EMB_NOISE = 0.05
SPECIFICITY = np.array([0.7, 1.0, 0.4])  # by query type

# Marsaglia-Tsang proposals per gamma draw; all of them are rejected with probability below
# 0.049^8 < 4e-11, in which case the last proposal is used.
_GAMMA_PROPOSALS = 8


@struct.dataclass
class Catalog:
    """Products, fixed per `catalog_seed`; n = n_products, all float32 but `category` (int32).

    `basis` (n, 42) holds, side by side, what scores are linear in: the unit embedding (16) and
    category one-hot (4) for the base score, then the catalog-wide z-scores (6, computed in
    float64; a zero-std column is all zeros) of [cm2, discount, is_pl, bestseller, price,
    cm2 * 1[litter]] and the embedding (16) for the boost, so that scoring a context is one
    matrix-vector product (one GEMM under vmap). `embedding_mean` (16,) and `embedding_cov`
    (16, 16) (population statistics) z-score the personalisation column.
    """

    category: jax.Array
    price: jax.Array
    cm2: jax.Array
    discount: jax.Array
    is_pl: jax.Array
    bestseller: jax.Array
    strategic: jax.Array
    basis: jax.Array
    embedding_mean: jax.Array
    embedding_cov: jax.Array

    @property
    def unit_embedding(self) -> jax.Array:
        return self.basis[:, :EMB_DIM]

    @property
    def z_static(self) -> jax.Array:
        return self.basis[:, EMB_DIM + 4 : EMB_DIM + 10]

    @property
    def embedding(self) -> jax.Array:
        return self.basis[:, EMB_DIM + 10 :]


@struct.dataclass
class Context:
    """One user and their current query: scalars but `theta_cat` (4,) and the (16,) embeddings."""

    segment: jax.Array
    theta_price: jax.Array
    theta_pl: jax.Array
    theta_cat: jax.Array
    theta_emb: jax.Array
    query_category: jax.Array
    query_type: jax.Array
    phi_emb: jax.Array


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), the block function of jax.random.

    Args:
      key: (2,) uint32 key words (`jax.random.key_data` of a threefry key).
      x0, x1: uint32 counter words, any (equal) shape.

    Returns:
      the two uint32 output words, shaped like the counters; equal to JAX's: `jax.random.bits`
      of a (n,) uint32 array is `y0 ^ y1` for counters (0, arange(n)).
    """
    k0, k1 = key[0], key[1]
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _threefry_bits(key: jax.Array, size: int) -> jax.Array:
    """`jax.random.bits(key, (size,))` (uint32), from `threefry2x32`.

    JAX's (partitionable) threefry makes word i the XOR of the two output words of the block with
    counters (0, i). The words are computed in two halves and concatenated: XLA then stores them
    before the loop that consumes them rather than fusing the 20 rounds into it, which ran the
    score noise's normal quantile about 1.25x slower (XLA:CPU, whole env step measured A/B).
    """
    assert size < 2**32
    halves = []
    for lo, hi in ((0, size // 2), (size // 2, size)):
        counter = np.uint32(lo) + jax.lax.iota(jnp.uint32, hi - lo)
        y0, y1 = threefry2x32(key, jnp.zeros_like(counter), counter)
        halves.append(y0 ^ y1)
    return jnp.concatenate(halves)


def _bits_to_uniform(bits: jax.Array) -> jax.Array:
    """Uniforms in [tiny, 1) on the 2^-23 grid from uint32 bits, as `jax.random.uniform` maps them
    with minval = the smallest normal float32 (which keeps logs and quantiles finite)."""
    one_to_two = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000),
                                              jnp.float32)
    return jnp.maximum(one_to_two - 1.0, jnp.finfo(jnp.float32).tiny)


def uniform_draws(key: jax.Array, **shapes: tuple[int, ...]) -> dict[str, jax.Array]:
    """Uniform [tiny, 1) arrays of the given shapes, cut from one draw: bit for bit the pieces of
    `jax.random.uniform(key, (total,), minval=tiny, maxval=1.0)`.

    One draw per call site keeps compile times down (each site is an unrolled Threefry).
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = _bits_to_uniform(_threefry_bits(key, sum(sizes)))
    out, start = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes):
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    return out


def normal(u: jax.Array) -> jax.Array:
    """Standard normals from uniforms u in (0, 1) by the inverse CDF, as `jax.random.normal` does.

    erf_inv compiles and runs faster than ndtri; the clip keeps 2u - 1 off -1, and u's 2^-23
    grid bounds |z| by about 5.3, as in `jax.random.normal`.
    """
    signed = jnp.maximum(2.0 * u - 1.0, -1.0 + 2.0**-23)
    return np.float32(np.sqrt(2.0)) * jax.lax.erf_inv(signed)


def categorical(u: jax.Array, p) -> jax.Array:
    """Inverse-CDF draw from probabilities p (..., k) with a uniform u: int32 index."""
    cdf = jnp.cumsum(p, axis=-1)[..., :-1]
    return jnp.sum(u[..., None] > cdf, axis=-1, dtype=jnp.int32)


def dirichlet(u: jax.Array, alpha: jax.Array) -> jax.Array:
    """Dirichlet(alpha (k,)) from uniforms u (2 * 8 + 1, k), as in the original, via Gamma draws.

    Gamma(alpha) = Gamma(alpha + 1) * U^(1 / alpha), the first in Marsaglia-Tsang's method
    (first accepted of 8 proposals), kept in log space because U^(1 / 0.05) underflows; the
    Dirichlet sample is then a softmax of the log-gammas.
    """
    m = _GAMMA_PROPOSALS
    d = alpha + 2.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    x, log_u = normal(u[:m]), jnp.log(u[m : 2 * m])
    v = (1.0 + c * x) ** 3
    log_v = jnp.log(jnp.where(v > 0.0, v, 1.0))
    accept = (v > 0.0) & (log_u < 0.5 * x**2 + d - d * v + d * log_v)
    first = jnp.where(accept.any(axis=0), jnp.argmax(accept, axis=0), m - 1)
    log_gamma = jnp.log(d) + jnp.take_along_axis(log_v, first[None], 0)[0] + jnp.log(u[-1]) / alpha
    return jax.nn.softmax(log_gamma)


def make_catalog(key: jax.Array, n_products: int) -> Catalog:
    """Samples a catalog of `n_products` products from `key` and precomputes its statistics."""
    n = n_products
    # Jitted: op by op, the unrolled Threefry would compile a small program per operation.
    draws = jax.jit(partial(uniform_draws, u=(4, n), z=(3 + EMB_DIM, n), centres=(4, EMB_DIM)))
    r = draws(key)
    u = np.asarray(r["u"], np.float64)
    z = np.asarray(normal(r["z"]), np.float64)
    c = np.searchsorted(np.cumsum(CATEGORY_MIX)[:-1], u[0], side="right")
    price = np.exp(PRICE_MU[c] + PRICE_SIGMA[c] * z[0])
    cm2 = MARGIN_SLOPE[c] * price + MARGIN_NOISE * z[1]
    is_pl = (u[1] < PL_PROB[c]).astype(np.float64)
    discount_if_any = DISCOUNT_LOW + (DISCOUNT_HIGH - DISCOUNT_LOW) * u[3]
    discount = np.where(u[2] < DISCOUNT_P_ZERO, 0.0, discount_if_any)
    bestseller = np.maximum(0.0, BESTSELLER_MEAN[c] + BESTSELLER_STD[c] * z[2])
    centres = np.asarray(normal(r["centres"]), np.float64)
    embedding = centres[c] + EMB_CLUSTER_STD[c][:, None] * z[3:].T
    strategic = (c == STRATEGIC_CATEGORY).astype(np.float64)

    static = np.stack([cm2, discount, is_pl, bestseller, price, cm2 * strategic], axis=1)
    std = static.std(axis=0)
    z_static = (static - static.mean(axis=0)) / np.where(std == 0.0, 1.0, std)

    def f32(x):
        return jnp.asarray(x, jnp.float32)

    return Catalog(
        category=jnp.asarray(c, jnp.int32),
        price=f32(price),
        cm2=f32(cm2),
        discount=f32(discount),
        is_pl=f32(is_pl),
        bestseller=f32(bestseller),
        strategic=f32(strategic),
        basis=f32(np.concatenate([
            embedding / np.linalg.norm(embedding, axis=1, keepdims=True), np.eye(4)[c], z_static,
            embedding,
        ], axis=1)),
        embedding_mean=f32(embedding.mean(axis=0)),
        embedding_cov=f32(np.cov(embedding, rowvar=False, bias=True).reshape(EMB_DIM, EMB_DIM)),
    )


QUERY_DRAWS = {"query": (2,), "query_emb": (EMB_DIM,)}


def with_query(ctx: Context, u: dict[str, jax.Array]) -> Context:
    """`ctx` with a fresh query from the same user, from `uniform_draws(..., **QUERY_DRAWS)`."""
    return ctx.replace(
        query_category=categorical(u["query"][0], ctx.theta_cat),
        query_type=categorical(u["query"][1], QUERY_TYPE_MIX),
        phi_emb=ctx.theta_emb + QUERY_EMB_NOISE * normal(u["query_emb"]),
    )


def sample_query(key: jax.Array, ctx: Context) -> Context:
    """`ctx` with a fresh query (category, type, embedding) from the same user."""
    return with_query(ctx, uniform_draws(key, **QUERY_DRAWS))


CONTEXT_DRAWS = {
    "user": (3,), "gamma": (2 * _GAMMA_PROPOSALS + 1, 4), "theta_emb": (EMB_DIM,), **QUERY_DRAWS,
}


def context_from_uniforms(u: dict[str, jax.Array]) -> Context:
    """A new user and first query from `uniform_draws(..., **CONTEXT_DRAWS)`."""
    seg = categorical(u["user"][0], SEGMENT_MIX)
    z = normal(u["user"][1:])
    price, pl = jnp.asarray(THETA_PRICE, jnp.float32)[seg], jnp.asarray(THETA_PL, jnp.float32)[seg]
    user = Context(
        segment=seg,
        theta_price=price[0] + price[1] * z[0],
        theta_pl=pl[0] + pl[1] * z[1],
        theta_cat=dirichlet(u["gamma"], jnp.asarray(CAT_CONCENTRATION, jnp.float32)[seg]),
        theta_emb=normal(u["theta_emb"]),
        query_category=jnp.int32(0),
        query_type=jnp.int32(0),
        phi_emb=jnp.zeros(EMB_DIM),
    )
    return with_query(user, u)


def sample_context(key: jax.Array) -> Context:
    """A new user (segment and latent preferences) and their first query."""
    return context_from_uniforms(uniform_draws(key, **CONTEXT_DRAWS))
