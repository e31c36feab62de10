"""LQR-v0: the environment's rules and its exact references (against scipy, float64 numpy and
Monte Carlo rollouts of the environment itself)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import envs
from envs import lqr


def np_moments(p, noise_std):
    """float64 E[s0 s0'], noise covariance W and exploration cost c, computed independently."""
    lo, hi = np.asarray(p.init_low, np.float64), np.asarray(p.init_high, np.float64)
    B, R = np.asarray(p.B, np.float64), np.asarray(p.R, np.float64)
    n, m = B.shape
    var = np.broadcast_to(np.asarray(noise_std, np.float64) ** 2, (m,))
    S0 = np.outer((lo + hi) / 2, (lo + hi) / 2) + np.diag((hi - lo) ** 2 / 12)
    W = B @ np.diag(var) @ B.T + p.noise_std**2 * np.eye(n)
    return S0, W, var @ np.diag(R)


def np_cost(K, p, noise_std=0.0, horizon=None):
    """float64 reference: covariance recursion (finite) or scipy's Lyapunov solver (infinite)."""
    A, B, Q, R = (np.asarray(x, np.float64) for x in (p.A, p.B, p.Q, p.R))
    K, g = np.asarray(K, np.float64), p.gamma
    S0, W, c = np_moments(p, noise_std)
    F, M = A + B @ K, Q + K.T @ R @ K
    if horizon is None:
        P = scipy.linalg.solve_discrete_lyapunov(np.sqrt(g) * F.T, M)
        return np.trace(P @ S0) + (g * np.trace(P @ W) + c) / (1 - g)
    total, S = 0.0, S0
    for t in range(horizon):
        total += g**t * (np.trace(M @ S) + c)
        S = F @ S @ F.T + W
    return total


def np_grad(K, p, noise_std=0.0, horizon=None, h=1e-5):
    """Central finite differences of `np_cost`, shape (m, n)."""
    K = np.asarray(K, np.float64)
    grad = np.zeros_like(K)
    for idx in np.ndindex(K.shape):
        e = np.zeros_like(K)
        e[idx] = h
        up, down = np_cost(K + e, p, noise_std, horizon), np_cost(K - e, p, noise_std, horizon)
        grad[idx] = (up - down) / (2 * h)
    return grad


def scipy_gain(p):
    A, B, Q, R = (np.asarray(x, np.float64) for x in (p.A, p.B, p.Q, p.R))
    g = p.gamma
    P = scipy.linalg.solve_discrete_are(np.sqrt(g) * A, np.sqrt(g) * B, Q, R)
    return -np.linalg.solve(R + g * B.T @ P @ B, g * B.T @ P @ A)


def random_system(n, m, seed, **overrides):
    """A random open-loop unstable, controllable system (spectral radius 1.1), random Q, R."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    A *= 1.1 / np.abs(np.linalg.eigvals(A)).max()
    L, M = rng.normal(size=(n, n)), rng.normal(size=(m, m))
    return envs.make(
        "LQR-v0", A=A, B=rng.normal(size=(n, m)), Q=L @ L.T / n + 0.1 * np.eye(n),
        R=M @ M.T / m + 0.5 * np.eye(m), gamma=rng.uniform(0.9, 0.999), **overrides,
    )


def mc_returns(env, p, K, noise_std, num_episodes, key):
    """Discounted returns (num_episodes,) of a = K s + noise_std * eps, from env.step itself,
    and whether any step terminated / which steps truncated."""
    m, T = p.B.shape[1], p.max_steps_in_episode

    def episode(key):
        key, k0 = jax.random.split(key)
        obs, state = env.reset(k0, p)

        def body(carry, key):
            obs, state = carry
            ka, ks = jax.random.split(key)
            a = K @ obs + noise_std * jax.random.normal(ka, (m,))
            obs, state, r, term, trunc, _ = env.step(ks, state, a, p)
            return (obs, state), (r, term, trunc)

        _, (r, term, trunc) = jax.lax.scan(body, (obs, state), jax.random.split(key, T))
        return jnp.sum(p.gamma ** jnp.arange(T) * r), term.any(), trunc

    return jax.jit(jax.vmap(episode))(jax.random.split(key, num_episodes))


def test_default_is_the_textbook_system():
    env, p = envs.make("LQR-v0")
    assert isinstance(env, lqr.LQR) and env.name == "LQR-v0"
    np.testing.assert_array_equal(p.A, [[1.0]])
    np.testing.assert_array_equal(p.B, [[1.0]])
    assert p.gamma == 0.99 and p.max_steps_in_episode == 200
    K = lqr.optimal_gain(p)
    assert K.shape == (1, 1)
    assert round(float(K[0, 0]), 4) == -0.6153
    # The 1-D case of the n-D default family is the same system.
    assert lqr.make(state_dim=1, action_dim=1)[1] == p


@pytest.mark.parametrize("n,m", [(1, 1), (2, 1), (3, 2), (4, 1), (4, 2)])
def test_optimal_gain_matches_scipy(n, m):
    for seed in range(3):
        _, p = random_system(n, m, seed)
        K_ref = scipy_gain(p)
        atol = 1e-5 * np.abs(K_ref).max()
        np.testing.assert_allclose(lqr.optimal_gain(p), K_ref, rtol=1e-4, atol=atol)
    _, p = envs.make("LQR-v0", state_dim=n, action_dim=m)
    np.testing.assert_allclose(lqr.optimal_gain(p), scipy_gain(p), rtol=1e-4, atol=1e-6)


def test_default_systems_are_well_conditioned():
    for n, m in [(2, 1), (3, 2), (4, 1), (6, 2)]:
        _, p = envs.make("LQR-v0", state_dim=n, action_dim=m)
        K = scipy_gain(p)
        F = np.asarray(p.A) + np.asarray(p.B) @ K
        assert np.abs(np.linalg.eigvals(F)).max() < 0.8 and np.abs(K).max() < 5
        g = p.gamma
        P = scipy.linalg.solve_discrete_are(np.sqrt(g) * p.A, np.sqrt(g) * p.B, p.Q, p.R)
        assert np.linalg.cond(P) < 250


def test_optimal_gain_vmaps_over_gamma():
    _, p = envs.make("LQR-v0", state_dim=2)
    gammas = jnp.array([0.9, 0.99])
    Ks = jax.vmap(lambda g: lqr.optimal_gain(p.replace(gamma=g)))(gammas)
    for g, K in zip([0.9, 0.99], Ks):
        np.testing.assert_allclose(K, scipy_gain(p.replace(gamma=g)), rtol=1e-4)


def test_value_matrix():
    _, p = envs.make("LQR-v0")
    np.testing.assert_allclose(lqr.value_matrix(jnp.zeros((1, 1)), p), [[100.0]], rtol=1e-5)
    assert np.all(np.isinf(lqr.value_matrix(jnp.array([[0.5]]), p)))  # sqrt(.99) * 1.5 > 1
    _, p = random_system(3, 2, seed=0)
    K = jnp.asarray(scipy_gain(p), jnp.float32)
    g = p.gamma
    F = np.sqrt(g) * (np.asarray(p.A) + np.asarray(p.B) @ np.asarray(K))
    P_ref = scipy.linalg.solve_discrete_lyapunov(F.T, np.asarray(p.Q + K.T @ p.R @ K))
    np.testing.assert_allclose(lqr.value_matrix(K, p), P_ref, rtol=1e-4)
    # At K*, P_K is the DARE solution.
    A, B = np.sqrt(g) * np.asarray(p.A), np.sqrt(g) * np.asarray(p.B)
    np.testing.assert_allclose(
        P_ref, scipy.linalg.solve_discrete_are(A, B, np.asarray(p.Q), np.asarray(p.R)), rtol=1e-4
    )


def test_policy_cost_matches_float64_reference():
    _, p = random_system(3, 2, seed=1, noise_std=0.2, init_low=[0.0, 0.5, -1.0], init_high=1.0)
    K = jnp.asarray(scipy_gain(p) + 0.05, jnp.float32)
    for noise_std in (0.0, jnp.array([0.3, 0.1])):
        for horizon in (None, 1, 40):
            cost = lqr.policy_cost(K, p, noise_std, horizon)
            np.testing.assert_allclose(cost, np_cost(K, p, noise_std, horizon), rtol=1e-4)
    _, p = envs.make("LQR-v0")
    assert lqr.policy_cost(jnp.array([[0.5]]), p) == jnp.inf


def test_policy_cost_matches_env_monte_carlo_finite_horizon():
    # Process noise, exploration noise with a per-action std, and a nonzero mean start.
    env, p = envs.make(
        "LQR-v0", state_dim=3, action_dim=2, noise_std=0.2, init_low=[0.0, 0.5, -1.0], init_high=1.0
    )
    K, noise_std = lqr.optimal_gain(p) + 0.1, jnp.array([0.5, 0.2])
    returns, terminated, truncated = mc_returns(env, p, K, noise_std, 4000, jax.random.key(0))
    assert not terminated.any()
    assert truncated[:, -1].all() and not truncated[:, :-1].any()
    se = returns.std() / np.sqrt(len(returns))
    assert abs(returns.mean() + lqr.policy_cost(K, p, noise_std, p.max_steps_in_episode)) < 3 * se


@pytest.mark.integration
def test_policy_cost_matches_env_monte_carlo_infinite_horizon():
    # gamma^1000 = 4e-5: the truncated tail is far below the Monte Carlo error.
    env, p = envs.make("LQR-v0", horizon=1000, noise_std=0.2, init_low=0.5, init_high=1.0)
    K = jnp.array([[-0.4]])
    returns, terminated, _ = mc_returns(env, p, K, 0.3, 2000, jax.random.key(1))
    assert not terminated.any()
    se = returns.std() / np.sqrt(len(returns))
    assert abs(returns.mean() + lqr.policy_cost(K, p, 0.3)) < 3 * se


@pytest.mark.integration
def test_policy_cost_gradient():
    _, p = envs.make("LQR-v0", state_dim=3, action_dim=2, noise_std=0.1, init_low=[0.0, 0.5, -1.0])
    K = lqr.optimal_gain(p) + jnp.array([[0.1, -0.05, 0.0], [0.0, 0.05, 0.1]])
    noise_std = jnp.array([0.3, 0.1])
    for horizon in (None, 30):
        fd = np_grad(K, p, noise_std, horizon)
        autodiff = jax.grad(lqr.policy_cost)(K, p, noise_std, horizon)
        closed_form = lqr.policy_cost_grad(K, p, noise_std, horizon)
        for grad in (autodiff, closed_form):
            np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=1e-3 * np.abs(fd).max())
    # K* is stationary for the infinite-horizon cost, whatever the noise.
    grad_star = lqr.policy_cost_grad(lqr.optimal_gain(p), p, noise_std)
    assert np.abs(grad_star).max() < 1e-4 * np.abs(fd).max()


@pytest.mark.parametrize("kwargs,noise_std", [
    (dict(horizon=10), 0.3),
    (dict(state_dim=3, action_dim=2, horizon=15, noise_std=0.2, init_low=0.5),
     jnp.array([0.3, 0.1])),
])
def test_optimal_gain_finite_horizon(kwargs, noise_std):
    _, p = envs.make("LQR-v0", **kwargs)
    T = p.max_steps_in_episode
    K_star, K_T = lqr.optimal_gain(p), lqr.optimal_gain_finite_horizon(p, noise_std)
    # Stationary (by float64 finite differences) and strictly better than K* over T steps.
    grad_star = np.abs(np_grad(K_star, p, noise_std, T)).max()
    assert grad_star > 1e-2
    assert np.abs(np_grad(K_T, p, noise_std, T)).max() < 1e-3 * grad_star
    assert np_cost(K_T, p, noise_std, T) < np_cost(K_star, p, noise_std, T) - 1e-3


def test_optimal_gain_finite_horizon_default_is_k_star_without_noise():
    _, p = envs.make("LQR-v0")
    np.testing.assert_allclose(lqr.optimal_gain_finite_horizon(p), lqr.optimal_gain(p), rtol=1e-5)


def test_reset_and_step_under_jit_and_vmap():
    env, p = envs.make("LQR-v0", state_dim=3, action_dim=2)
    keys = jax.random.split(jax.random.key(0), 8)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, p)
    assert obs.shape == (8, 3) and obs.dtype == jnp.float32
    assert np.all(np.abs(obs) <= 1.0)
    actions = jnp.ones((8, 2))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs2, state2, reward, terminated, truncated, info = step(keys, state, actions, p)
    assert obs2.shape == (8, 3) and reward.shape == (8,) and reward.dtype == jnp.float32
    assert not terminated.any() and not truncated.any()
    expected = obs @ np.asarray(p.A).T + actions @ np.asarray(p.B).T
    np.testing.assert_allclose(obs2, expected, rtol=1e-6)
    np.testing.assert_allclose(reward, -(jnp.sum(obs**2, 1) + 2.0), rtol=1e-6)
    np.testing.assert_array_equal(state2.time, 1)
    assert env.action_space(p).shape == (2,) and env.action_space(p).low == -jnp.inf
    assert env.observation_space(p).shape == (3,) and env.num_actions == 2


def test_fixed_initial_state_and_truncation():
    env, p = envs.make("LQR-v0", init_low=0.5, init_high=0.5, horizon=3)
    obs, state = env.reset(jax.random.key(0), p)
    np.testing.assert_array_equal(obs, [0.5])
    for t in range(3):
        key = jax.random.key(t)
        obs, state, _, terminated, truncated, info = env.step(key, state, jnp.zeros(1), p)
        assert not terminated and bool(truncated) == (t == 2)
    np.testing.assert_array_equal(info["final_observation"], [0.5])  # zero action keeps s = 0.5
    assert state.time == 0  # auto-reset


def test_state_bound_keeps_destabilising_policies_finite():
    env, p = envs.make("LQR-v0", state_dim=3, action_dim=2)
    K = 1e6 * jnp.ones((2, 3))

    def rollout(key):
        obs, state = env.reset(key, p)

        def body(carry, key):
            obs, state = carry
            out = env.step(key, state, K @ obs, p)
            return out[:2], (K @ obs, *out[:5], out[5]["final_observation"])

        return jax.lax.scan(body, (obs, state), jax.random.split(key, 500))[1]

    actions, obs, _, reward, terminated, _, final_obs = jax.jit(jax.vmap(rollout))(
        jax.random.split(jax.random.key(0), 32)
    )
    assert np.isfinite(actions).all() and np.isfinite(obs).all() and np.isfinite(reward).all()
    assert terminated.mean() > 0.5
    assert np.all(reward[terminated] <= -p.bound_penalty)
    assert np.all(np.abs(final_obs).max(-1)[terminated] == p.state_bound)
    assert np.all(np.abs(final_obs) <= p.state_bound)


def test_state_bound_penalty_and_clipping_exactly():
    env, p = envs.make("LQR-v0", init_low=0.9, init_high=0.9, state_bound=10.0, bound_penalty=7.0)
    _, state = env.reset(jax.random.key(0), p)
    obs, state, reward, terminated, _, _ = env.step(jax.random.key(1), state, jnp.array([5.0]), p)
    assert not terminated and np.isclose(obs[0], 5.9) and np.isclose(reward, -(0.81 + 25.0))
    obs, _, reward, terminated, _, info = env.step(jax.random.key(2), state, jnp.array([-20.0]), p)
    assert terminated and np.isclose(reward, -(5.9**2 + 400.0 + 7.0))
    np.testing.assert_array_equal(info["final_observation"], [-10.0])
    np.testing.assert_array_equal(obs, [np.float32(0.9)])  # auto-reset to the fixed start


@pytest.mark.parametrize("overrides,field", [
    (dict(foo=1), "foo"),
    (dict(A=np.eye(2), state_dim=1), "A"),
    (dict(B=np.ones((2, 1))), "B"),
    (dict(Q=-np.eye(1)), "Q"),
    (dict(Q=np.array([[1.0, 1.0], [0.0, 1.0]]), state_dim=2), "Q"),
    (dict(R=np.zeros((1, 1))), "R"),
    (dict(R=np.eye(2)), "R"),
    (dict(gamma=0.0), "gamma"),
    (dict(gamma=1.5), "gamma"),
    (dict(horizon=0), "horizon"),
    (dict(horizon=2.5), "horizon"),
    (dict(init_low=2.0), "init_low"),
    (dict(init_high=np.ones(3)), "init_high"),
    (dict(noise_std=-1.0), "noise_std"),
    (dict(state_bound=0.0), "state_bound"),
    (dict(bound_penalty=-1.0), "bound_penalty"),
    (dict(state_dim=0), "state_dim"),
])
def test_bad_overrides_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        envs.make("LQR-v0", **overrides)


def test_unknown_override_lists_accepted_names():
    with pytest.raises(ValueError, match="accepted.*state_bound"):
        envs.make("LQR-v0", max_steps=3)


def test_dimensions_are_inferred_from_overrides():
    env, p = envs.make("LQR-v0", A=np.eye(4), B=np.ones((4, 2)))
    assert p.Q.shape == (4, 4) and p.R.shape == (2, 2) and p.init_low.shape == (4,)
    assert env.action_space(p).shape == (2,) and env.default_params.A.shape == (4, 4)
