"""The optional environment hook the CLI reads for exact references and reference policies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import lqr
from jaxpg.presets.references import references, score_policies


def test_lqr_references_are_exact():
    env, params = envs.make("LQR-v0", state_dim=3, action_dim=2)
    K_star = np.asarray(lqr.optimal_gain(params))
    K = K_star * 1.1
    found = references(env, params, act=lambda obs: obs @ jnp.asarray(K).T)
    values = found["values"]
    np.testing.assert_allclose(values["K*"], K_star, rtol=1e-6)
    np.testing.assert_allclose(values["learned_gain"], K, rtol=1e-5)
    assert abs(values["gain_relative_error"] - 0.1) < 1e-5
    expected = -float(lqr.policy_cost(lqr.optimal_gain(params), params.replace(gamma=1.0), 0.0, 200))
    assert abs(values["optimal_return"] - expected) < 1e-6
    # The K* policy's Monte Carlo return on evaluation episodes agrees with the exact value.
    scored = score_policies(env, params, found["policies"], jax.random.split(jax.random.key(0), 4), 512)
    assert abs(scored["riccati"] - expected) < 0.05 * abs(expected)


@pytest.mark.integration
def test_search_ranking_offers_its_reference_policies_and_gymnax_envs_none():
    env, params = envs.make("SearchRanking-v0", n_products=200)
    found = references(env, params)
    assert found["values"] == {} and set(found["policies"]) == {"zero action", "expert template"}
    scored = score_policies(env, params, found["policies"], jax.random.split(jax.random.key(0), 2), 256)
    assert scored["expert template"] > scored["zero action"]
    assert references(*envs.make("Pendulum-v1")) == {"values": {}, "policies": {}}
