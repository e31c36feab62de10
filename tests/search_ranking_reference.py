"""An independent, deliberately plain NumPy implementation of `shared/specs/search_ranking.md`.

Written from the spec (loops and float64 where the JAX version vectorises and uses float32), so
that tests can check `envs.search_ranking` mechanic by mechanic on the same catalog and context.
Catalogs and contexts are plain dicts of NumPy arrays; `catalog_from_params` and
`context_from_state` convert the JAX environment's, so both sides can run on identical inputs.
"""

import math

import numpy as np

N_CAT, EMB = 4, 16

CATEGORY_MIX = [0.35, 0.35, 0.15, 0.15]
PRICE_MU = [2.6, 2.5, 2.2, 1.8]
PRICE_SIGMA = [0.4, 0.4, 0.35, 0.6]
MARGIN_SLOPE = [0.12, 0.11, -0.03, 0.20]
PL_PROB = [0.35, 0.40, 0.50, 0.15]
BEST_MU = [2.0, 2.2, 1.2, 0.8]
BEST_SD = [0.7, 0.7, 0.5, 0.6]
EMB_SD = [0.7, 0.7, 0.5, 0.9]
LITTER = 2

SEGMENT_MIX = [0.35, 0.25, 0.15, 0.25]
THETA_PRICE = [(-3.5, 0.3), (-1.8, 0.2), (1.2, 0.25), (-1.0, 0.2)]
THETA_PL = [(-1.0, 0.2), (3.2, 0.3), (-2.0, 0.2), (1.0, 0.2)]
CAT_CONC = [[0.3, 0.3, 0.2, 0.2], [0.2, 0.45, 0.2, 0.15], [0.5, 0.25, 0.05, 0.2],
            [0.05, 0.05, 0.85, 0.05]]
QUERY_TYPE_MIX = [0.6, 0.2, 0.2]
SPECIFICITY = [0.7, 1.0, 0.4]  # category, brand, generic

LN2, LN3 = math.log(2.0), math.log(3.0)
LEX = [[LN3, LN2, 0, 0], [LN2, LN3, 0, 0], [0, 0, LN2, 0], [0, 0, 0, LN2]]
POS_BIAS = [
    [1.2, 0.9, 0.7, 0.5, 0.3] + [0.2] * 15,
    [1.5, 0.8, 0.5, 0.3, 0.2] + [0.1] * 15,
    [1.0, 0.8, 0.6, 0.4, 0.2] + [0.1] * 15,
]
AGG_MEAN = [30, 15, 0.3, 0.1, 0.5, 0.2, 300, 5]
AGG_STD = [20, 10, 0.2, 0.1, 0.3, 0.2, 200, 2]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def catalog_from_params(params):
    """The JAX environment's catalog as a dict of float64 (category: int) NumPy arrays."""
    c = params.catalog
    out = {k: np.asarray(getattr(c, k), np.float64)
           for k in ("price", "cm2", "discount", "is_pl", "bestseller", "embedding")}
    out["category"] = np.asarray(c.category)
    return out


def context_from_state(ctx):
    """A JAX `Context` (unbatched) as a dict of NumPy values."""
    return {
        "segment": int(ctx.segment), "theta_price": float(ctx.theta_price),
        "theta_pl": float(ctx.theta_pl), "theta_cat": np.asarray(ctx.theta_cat, np.float64),
        "theta_emb": np.asarray(ctx.theta_emb, np.float64),
        "query_category": int(ctx.query_category), "query_type": int(ctx.query_type),
        "phi_emb": np.asarray(ctx.phi_emb, np.float64),
    }


def sample_catalog(rng, n):
    """A catalog drawn with NumPy, product by product."""
    centres = rng.normal(size=(N_CAT, EMB))
    cat = {k: np.zeros(n) for k in ("price", "cm2", "discount", "is_pl", "bestseller")}
    cat["category"] = np.zeros(n, int)
    cat["embedding"] = np.zeros((n, EMB))
    for i in range(n):
        c = rng.choice(N_CAT, p=CATEGORY_MIX)
        price = rng.lognormal(PRICE_MU[c], PRICE_SIGMA[c])
        cat["category"][i] = c
        cat["price"][i] = price
        cat["cm2"][i] = MARGIN_SLOPE[c] * price + rng.normal(0, 0.3)
        cat["is_pl"][i] = float(rng.random() < PL_PROB[c])
        cat["discount"][i] = 0.0 if rng.random() < 0.7 else rng.uniform(0.05, 0.3)
        cat["bestseller"][i] = max(0.0, rng.normal(BEST_MU[c], BEST_SD[c]))
        cat["embedding"][i] = centres[c] + rng.normal(0, EMB_SD[c], EMB)
    return cat


def sample_context(rng):
    """A user and query drawn with NumPy."""
    s = rng.choice(4, p=SEGMENT_MIX)
    theta_cat = rng.dirichlet(CAT_CONC[s])
    theta_emb = rng.normal(size=EMB)
    return {
        "segment": s, "theta_price": rng.normal(*THETA_PRICE[s]),
        "theta_pl": rng.normal(*THETA_PL[s]), "theta_cat": theta_cat, "theta_emb": theta_emb,
        "query_category": rng.choice(N_CAT, p=theta_cat),
        "query_type": rng.choice(3, p=QUERY_TYPE_MIX),
        "phi_emb": theta_emb + rng.normal(0, 0.05, EMB),
    }


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def features(cat, ctx):
    """The ten boost features, product by product: (n, 10)."""
    rows = []
    spec = SPECIFICITY[ctx["query_type"]]
    for i in range(len(cat["price"])):
        litter = cat["category"][i] == LITTER
        rows.append([
            cat["cm2"][i], cat["discount"][i], cat["is_pl"][i],
            float(ctx["theta_emb"] @ cat["embedding"][i]), cat["bestseller"][i], cat["price"][i],
            cat["cm2"][i] if litter else 0.0, cat["discount"][i] * ctx["theta_price"],
            cat["is_pl"][i] * ctx["theta_pl"], spec * cat["bestseller"][i],
        ])
    return np.array(rows)


def standardize(f):
    std = f.std(axis=0)
    std[std == 0] = 1.0
    return (f - f.mean(axis=0)) / std


def base_scores(cat, ctx, noise):
    """0.7 cos + 0.3 LEX + 0.05 noise, product by product: (n,)."""
    return np.array([
        0.7 * cosine(ctx["phi_emb"], cat["embedding"][i])
        + 0.3 * LEX[ctx["query_category"]][cat["category"][i]] + 0.05 * noise[i]
        for i in range(len(cat["price"]))
    ])


def ranking(cat, ctx, action, noise, top_k):
    scores = base_scores(cat, ctx, noise) + standardize(features(cat, ctx)) @ np.asarray(action)
    return np.argsort(-scores, kind="stable")[:top_k]


def raw_observation(ctx):
    obs = np.zeros(11)
    obs[ctx["query_category"]] = 1
    obs[4 + ctx["query_type"]] = 1
    obs[7 + ctx["segment"]] = 1
    return obs


def rich_observation(cat, ctx, base, top_k):
    obs = np.zeros(17)
    obs[ctx["segment"]] = 1
    obs[4 + ctx["query_type"]] = 1
    for j, theta in enumerate((ctx["theta_price"], ctx["theta_pl"])):
        obs[7 + j] = np.clip(np.round(0.7 * theta * 2) / 2, -3, 3)
    top = np.argsort(-base, kind="stable")[:top_k]
    prices = cat["price"][top]
    raw = [prices.mean(), prices.std(), cat["cm2"][top].mean(), cat["discount"][top].mean(),
           cat["is_pl"][top].mean(), np.mean(cat["category"][top] == LITTER),
           cat["bestseller"][top].mean(), base[top].mean()]
    obs[9:] = (np.array(raw) - AGG_MEAN) / AGG_STD
    return obs


def simulate_session(cat, ctx, rank, rng):
    """One cascade session down `rank`, drawing from `rng` in the original's order."""
    clicks = buys = 0
    gmv = cm2 = strategic = sat = 0.0
    bias = POS_BIAS[ctx["query_type"]]
    for j, p in enumerate(rank):
        price = cat["price"][p]
        c = cat["category"][p]
        u = (cosine(ctx["phi_emb"], cat["embedding"][p])
             + 0.8 * ctx["theta_price"] * math.log1p(price)
             + 1.2 * ctx["theta_pl"] * cat["is_pl"][p]
             + 0.6 * ctx["theta_cat"][c] + rng.normal(0, 0.8))
        if rng.random() > sigmoid(bias[min(j, len(bias) - 1)] + 0.2 * sat):
            break
        if rng.random() < sigmoid(u):
            clicks += 1
            sat += 0.5 * u
            if rng.random() < sigmoid(1.2 * u + 0.3 - 0.01 * math.log1p(price)):
                buys += 1
                gmv += price
                cm2 += cat["cm2"][p]
                strategic += float(c == LITTER)
                sat -= 1.2
                if buys >= 3:
                    break
        else:
            sat -= 0.2
        if sat < -2:
            break
    reward = gmv + 0.4 * cm2 + 2.0 * strategic + 0.1 * clicks
    return {"clicks": clicks, "purchases": buys, "gmv": gmv, "cm2": cm2,
            "strategic_buys": strategic, "satisfaction": sat, "reward": reward}


def return_probability(clicks, satisfaction):
    return sigmoid(math.log(0.35 / 0.65) + 0.2 * clicks + 0.15 * satisfaction)
