import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpg.core.advantages import ADVANTAGE_EPS, gae, group_advantages, leave_one_out_advantages, returns_to_go


def random_episodes(seed, T=64, N=5):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    terminated = rng.random((T, N)) < 0.08
    truncated = (rng.random((T, N)) < 0.05) & ~terminated
    values = rng.normal(size=(T, N)).astype(np.float32)
    next_values = rng.normal(size=(T, N)).astype(np.float32)
    # Where an episode goes on, the next state's value is the next step's value.
    continues = ~(terminated | truncated)
    next_values[:-1][continues[:-1]] = values[1:][continues[:-1]]
    return rewards, terminated, truncated, values, next_values


def python_returns_to_go(rewards, dones, gamma):
    T, N = rewards.shape
    out = np.zeros_like(rewards)
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            running = rewards[t, n] + gamma * (0.0 if dones[t, n] else running)
            out[t, n] = running
    return out


def python_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    T, N = rewards.shape
    out = np.zeros_like(rewards)
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t, n] else next_values[t, n]
            delta = rewards[t, n] + gamma * bootstrap - values[t, n]
            if terminated[t, n] or truncated[t, n]:
                running = delta
            else:
                running = delta + gamma * lam * running
            out[t, n] = running
    return out


def test_returns_to_go_matches_python_loop():
    rewards, terminated, truncated, _, _ = random_episodes(0)
    dones = terminated | truncated
    for gamma in (0.9, 0.99, 1.0):
        got = jax.jit(returns_to_go)(rewards, dones, gamma)
        np.testing.assert_allclose(got, python_returns_to_go(rewards, dones, gamma), rtol=1e-5, atol=1e-5)


def test_gae_matches_python_reference_with_terminations_and_truncations():
    rewards, terminated, truncated, values, next_values = random_episodes(1)
    for gamma, lam in ((0.99, 0.95), (0.9, 0.0), (1.0, 1.0)):
        adv, targets = jax.jit(gae)(rewards, values, next_values, terminated, truncated, gamma, lam)
        expected = python_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
        np.testing.assert_allclose(adv, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(targets, expected + values, rtol=1e-4, atol=1e-4)


def test_gae_lambda_one_is_returns_to_go_minus_values():
    rewards, terminated, _, values, _ = random_episodes(2)
    terminated[-1] = True  # every rollout ends its last episode, so no bootstrap is needed
    no_truncation = np.zeros_like(terminated)
    next_values = np.concatenate([values[1:], np.zeros_like(values[:1])])
    adv, _ = gae(rewards, values, next_values, terminated, no_truncation, 0.97, 1.0)
    expected = python_returns_to_go(rewards, terminated, 0.97) - values
    np.testing.assert_allclose(adv, expected, rtol=1e-4, atol=1e-4)


def test_truncation_bootstraps_and_termination_does_not():
    rewards = np.ones((1, 2), np.float32)
    values = np.zeros((1, 2), np.float32)
    next_values = np.full((1, 2), 10.0, np.float32)
    terminated = np.array([[True, False]])
    truncated = np.array([[False, True]])
    adv, _ = gae(rewards, values, next_values, terminated, truncated, 0.9, 0.95)
    np.testing.assert_allclose(adv, [[1.0, 1.0 + 0.9 * 10.0]])


def test_episode_statistics_match_a_python_loop():
    from jaxpg.algos.trainer import episode_statistics

    rng = np.random.default_rng(3)
    for _ in range(20):
        T, N = 40, 6
        rewards = rng.normal(size=(T, N)).astype(np.float32)
        dones = rng.random((T, N)) < 0.15
        carried_return = rng.normal(size=N).astype(np.float32)
        carried_length = rng.integers(0, 9, N).astype(np.float32)
        ret, length = carried_return.copy(), carried_length.copy()
        finished = [0.0, 0.0, 0]
        for t in range(T):
            ret += rewards[t]
            length += 1
            for n in np.flatnonzero(dones[t]):
                finished[0] += ret[n]
                finished[1] += length[n]
                finished[2] += 1
                ret[n] = length[n] = 0
        got = episode_statistics(rewards, dones, carried_return, carried_length)
        np.testing.assert_allclose(got[0], ret, atol=1e-4)
        np.testing.assert_allclose(got[1], length, atol=1e-4)
        np.testing.assert_allclose([float(x) for x in got[2:]], finished, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("scale", ["none", "group", "batch"])
def test_leave_one_out_advantages_match_a_direct_loop(scale):
    rng = np.random.default_rng(3)
    G = 5
    returns = rng.normal(size=4 * G).astype(np.float32)
    returns[G : 2 * G] = 0.7  # a group with zero spread
    adv, std = leave_one_out_advantages(jnp.asarray(returns), G, scale)
    groups = returns.reshape(-1, G).astype(np.float64)
    expected = np.zeros_like(groups)
    for g in range(groups.shape[0]):
        for i in range(G):
            others = [groups[g, j] for j in range(G) if j != i]
            divisor = {
                "none": 1.0, "group": groups[g].std(ddof=1), "batch": returns.astype(np.float64).std(ddof=1)
            }[scale]
            expected[g, i] = (groups[g, i] - sum(others) / (G - 1)) / (divisor + ADVANTAGE_EPS)
    np.testing.assert_allclose(adv, expected.reshape(-1), rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(adv)[G : 2 * G] == 0)
    np.testing.assert_allclose(std, groups.std(1, ddof=1), rtol=1e-5)
    # The leave-one-out baseline is G / (G - 1) times the group-mean one, before scaling.
    centred, _ = group_advantages(jnp.asarray(returns), G, "none")
    np.testing.assert_allclose(leave_one_out_advantages(jnp.asarray(returns), G)[0], G / (G - 1) * centred,
                               rtol=1e-4, atol=1e-5)
