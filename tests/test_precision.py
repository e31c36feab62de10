"""Exact results must not depend on the device: every matmul in the LQR references and dynamics
and in SearchRanking's scoring runs at full precision (GPUs default float32 matmuls to TF32).
Policy networks are not covered: they accept the device's default precision."""

import jax
import jax.numpy as jnp
import pytest

import envs
from envs import lqr
from envs import search_ranking as sr

HIGHEST = jax.lax.Precision.HIGHEST


def _subjaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _subjaxprs(v)


def dot_precisions(jaxpr):
    """The `precision` of every `dot_general` in `jaxpr` and the jaxprs nested in it."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn.params["precision"]
        for value in eqn.params.values():
            for sub in _subjaxprs(value):
                yield from dot_precisions(sub)


def assert_all_highest(fn, *args):
    precisions = list(dot_precisions(jax.make_jaxpr(fn)(*args).jaxpr))
    assert precisions, "no dot_general found: the test checks nothing"
    low = [p for p in precisions if p not in (HIGHEST, (HIGHEST, HIGHEST))]
    assert not low, f"{len(low)} of {len(precisions)} dot_generals below HIGHEST: {low[:3]}"


@pytest.fixture(scope="module")
def lqr_2x2():
    return envs.make("LQR-v0", state_dim=2, action_dim=2, noise_std=0.1, horizon=5)


def test_lqr_references_run_at_full_precision(lqr_2x2):
    env, params = lqr_2x2
    K = lqr.optimal_gain(params)
    assert_all_highest(lqr.optimal_gain, params)
    assert_all_highest(lqr.value_matrix, K, params)
    assert_all_highest(lambda K, p: lqr.policy_cost(K, p, 0.1), K, params)
    assert_all_highest(lambda K, p: lqr.policy_cost(K, p, 0.1, 5), K, params)
    assert_all_highest(lambda K, p: lqr.policy_cost_grad(K, p, 0.1), K, params)
    assert_all_highest(lambda K, p: lqr.policy_cost_grad(K, p, 0.1, 5), K, params)
    assert_all_highest(lambda p: lqr.optimal_gain_finite_horizon(p, 0.1, 5, iterations=2), params)
    riccati = env.references(params)["policies"]["riccati"]
    assert_all_highest(riccati, jnp.ones((8, 2)), jax.random.key(0))


def test_lqr_dynamics_run_at_full_precision(lqr_2x2):
    env, params = lqr_2x2
    keys = jax.random.split(jax.random.key(0), 8)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    assert_all_highest(step, keys, state, jnp.ones((8, 2)), params)


@pytest.mark.parametrize("options", [dict(), pytest.param(dict(observation="raw", multi_session=True),
                                                       marks=pytest.mark.integration)])
def test_search_ranking_scores_run_at_full_precision(options):
    env, params = sr.make(n_products=200, top_k=5, **options)
    keys = jax.random.split(jax.random.key(0), 8)
    if env.observation == "rich":  # a 'raw' reset multiplies nothing
        assert_all_highest(jax.vmap(env.reset, in_axes=(0, None)), keys, params)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    assert_all_highest(step, keys, state, jnp.ones((8, 10)), params)
    assert_all_highest(lambda o: sr.expert_action(o, env), obs)
    assert_all_highest(lambda c: sr.feature_matrix(params.catalog, c), jax.tree.map(lambda x: x[0], state.context))
