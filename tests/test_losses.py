"""Every loss piece in `jaxpg.losses` against a NumPy reference written out here, loop by loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpg.core import losses

T, B = 7, 6


def random_batch(seed):
    """Per-step values, a first-episode-style mask with lengths 1..T, and per-column advantages."""
    rng = np.random.default_rng(seed)
    per_step = rng.normal(size=(T, B)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B)
    mask = (np.arange(T)[:, None] < lengths[None]).astype(np.float32)
    advantages = rng.normal(size=B).astype(np.float32)
    log_ratio = (0.4 * rng.normal(size=(T, B))).astype(np.float32)
    return per_step, lengths, mask, advantages, log_ratio


def numpy_surrogate(ratio, advantage, low, high):
    unclipped = ratio * advantage
    clipped = min(max(ratio, 1 - low), 1 + high) * advantage
    return min(unclipped, clipped)


def test_masked_mean_and_standardize():
    per_step, lengths, mask, _, _ = random_batch(0)
    active = [per_step[t, b] for b in range(B) for t in range(lengths[b])]
    np.testing.assert_allclose(losses.masked_mean(per_step, mask), np.mean(active), rtol=1e-5)
    assert float(losses.masked_mean(per_step, np.zeros_like(mask))) == 0.0
    standardized = np.asarray(losses.masked_standardize(jnp.asarray(per_step), jnp.asarray(mask)))
    picked = np.array([standardized[t, b] for b in range(B) for t in range(lengths[b])])
    expected = (np.array(active) - np.mean(active)) / (np.std(active) + 1e-8)
    np.testing.assert_allclose(picked, expected, rtol=1e-4, atol=1e-5)
    x = per_step.reshape(-1)
    np.testing.assert_allclose(losses.standardize(x), (x - x.mean()) / (x.std() + 1e-8), rtol=1e-4, atol=1e-5)


def test_first_episode_mask():
    dones = np.zeros((6, 3), np.float32)
    dones[2, 0] = dones[4, 0] = 1.0  # ends at 2 (and again at 4)
    dones[5, 1] = 1.0  # ends on the last step
    expected = np.zeros((6, 3), np.float32)
    expected[:3, 0] = 1.0
    expected[:, 1] = 1.0
    expected[:, 2] = 1.0  # never ends: all steps active
    np.testing.assert_array_equal(losses.first_episode_mask(jnp.asarray(dones)), expected)


@pytest.mark.parametrize("low,high", [(0.2, 0.2), (0.2, 0.28), (0.1, 0.5)])
def test_clipped_surrogate_matches_numpy(low, high):
    _, _, _, advantages, log_ratio = random_batch(1)
    objective, clipped_low, clipped_high = losses.clipped_surrogate(
        jnp.asarray(log_ratio), jnp.asarray(advantages), low, high
    )
    ratio = np.exp(log_ratio.astype(np.float64))
    for t in range(T):
        for b in range(B):
            r, a = ratio[t, b], advantages[b]
            np.testing.assert_allclose(objective[t, b], numpy_surrogate(r, a, low, high), rtol=1e-5, atol=1e-6)
            assert bool(clipped_low[t, b]) == (r < 1 - low and a < 0)
            assert bool(clipped_high[t, b]) == (r > 1 + high and a > 0)


def test_asymmetric_clipping_acts_on_the_correct_side_only():
    ratios = np.array([0.5, 0.79, 1.0, 1.25, 1.5, 0.5, 1.5])
    advantages = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    objective, low, high = losses.clipped_surrogate(jnp.log(ratios), advantages, 0.2, 0.28)
    # Positive advantage: capped above at 1.28; below 0.8 the unclipped (smaller) term wins.
    np.testing.assert_allclose(objective[:5], [0.5, 0.79, 1.0, 1.25, 1.28], rtol=1e-6)
    # Negative advantage: floored at -(0.8) from below; above, the unclipped -1.5 wins.
    np.testing.assert_allclose(objective[5:], [-0.8, -1.5], rtol=1e-6)
    assert np.asarray(high).tolist() == [False, False, False, False, True, False, False]
    assert np.asarray(low).tolist() == [False, False, False, False, False, True, False]


def test_sequence_log_ratio_is_the_log_geometric_mean():
    log_ratio = jnp.log(jnp.array([[1.1, 0.9], [1.3, 1.0], [2.0, 1.2]]))
    mask = jnp.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    sequence = np.exp(np.asarray(losses.sequence_log_ratio(log_ratio, mask)))
    expected = [np.sqrt(1.1 * 1.3), (0.9 * 1.0 * 1.2) ** (1 / 3)]
    np.testing.assert_allclose(sequence, np.broadcast_to(expected, (3, 2)), rtol=1e-5)


def test_clip_fraction():
    log_ratio = jnp.log(jnp.array([0.7, 0.85, 1.0, 1.19, 1.21, 2.0]))
    assert float(losses.clip_fraction(log_ratio, 0.2)) == pytest.approx(3 / 6)


@pytest.mark.parametrize("clipped", [False, True])
def test_value_loss_matches_numpy(clipped):
    rng = np.random.default_rng(2)
    value, old, targets = (rng.normal(size=32).astype(np.float32) for _ in range(3))
    eps = 0.3
    expected = []
    for v, o, g in zip(value.astype(np.float64), old, targets):
        error = (v - g) ** 2
        if clipped:
            v_clipped = o + min(max(v - o, -eps), eps)
            error = max(error, (v_clipped - g) ** 2)
        expected.append(0.5 * error)
    got = losses.value_loss(value, targets, old, eps) if clipped else losses.value_loss(value, targets)
    np.testing.assert_allclose(got, np.mean(expected), rtol=1e-5)


def test_score_function_loss_and_its_gradient():
    _, lengths, mask, _, _ = random_batch(3)
    rng = np.random.default_rng(3)
    log_prob, weights = rng.normal(size=(T, B)).astype(np.float32), rng.normal(size=(T, B)).astype(np.float32)
    expected = -sum(log_prob[t, b] * weights[t, b] for b in range(B) for t in range(lengths[b])) / B
    np.testing.assert_allclose(losses.score_function_loss(log_prob, weights, mask), expected, rtol=1e-5)
    # d loss / d log_prob[t, b] = -mask * weight / B: the score-function estimator's weights.
    grad = jax.grad(losses.score_function_loss)(jnp.asarray(log_prob), jnp.asarray(weights), jnp.asarray(mask))
    np.testing.assert_allclose(grad, -mask * weights / B, rtol=1e-6)


def test_kl_estimators_match_numpy_and_k3_is_nonnegative():
    rng = np.random.default_rng(4)
    log_p, log_q = rng.normal(size=50).astype(np.float32), rng.normal(size=50).astype(np.float32)
    np.testing.assert_allclose(losses.k1_kl(log_p, log_q), log_p - log_q, rtol=1e-6)
    r = np.exp(log_q.astype(np.float64) - log_p)
    np.testing.assert_allclose(losses.k3_kl(log_p, log_q), r - 1 - np.log(r), rtol=1e-4, atol=1e-6)
    assert float(losses.k3_kl(log_p, log_q).min()) >= 0


def test_k1_and_k3_are_unbiased_for_categoricals_and_gaussians():
    key = jax.random.key(0)
    p_logits, q_logits = jnp.array([0.3, -1.0, 2.0]), jnp.array([0.0, 0.5, 1.0])
    samples = jax.random.categorical(key, p_logits, shape=(200_000,))
    log_p, log_q = jax.nn.log_softmax(p_logits), jax.nn.log_softmax(q_logits)
    exact = float(jnp.sum(jnp.exp(log_p) * (log_p - log_q)))
    for estimator in (losses.k1_kl, losses.k3_kl):
        estimates = estimator(log_p[samples], log_q[samples])
        assert abs(float(estimates.mean()) - exact) < 4 * float(estimates.std()) / np.sqrt(2e5)
    x = 0.4 + 1.3 * jax.random.normal(key, (200_000,))
    gauss = lambda x, m, s: -0.5 * ((x - m) / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)
    estimates = losses.k3_kl(gauss(x, 0.4, 1.3), gauss(x, -0.2, 1.0))
    exact = np.log(1.0 / 1.3) + (1.3**2 + 0.6**2) / 2 - 0.5
    assert float(estimates.min()) >= 0
    assert abs(float(estimates.mean()) - exact) < 4 * float(estimates.std()) / np.sqrt(2e5)


@pytest.mark.parametrize("loss_type", list(losses.LOSS_TYPES))
def test_aggregations_match_numpy(loss_type):
    per_step, lengths, mask, _, _ = random_batch(5)
    normalizer = 17.0  # the whole batch's active steps per minibatch, for dapo
    total = sum(per_step[: lengths[b], b].sum() for b in range(B))
    expected = {
        "grpo": np.mean([per_step[: lengths[b], b].mean() for b in range(B)]),
        "bnpo": total / lengths.sum(),
        "dr_grpo": total / (B * T),
        "dapo": total / normalizer,
    }[loss_type]
    got = losses.aggregate(jnp.asarray(per_step), jnp.asarray(mask), loss_type, normalizer)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    if loss_type == "dapo":  # without a batch normaliser, dapo is bnpo
        np.testing.assert_allclose(losses.aggregate(per_step, mask, "dapo"), total / lengths.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="loss_type='mean' is unknown"):
        losses.aggregate(per_step, mask, "mean")


@pytest.mark.parametrize("delta", [1.3, 1.6, 3.0])
def test_two_sided_clip_delta_matches_numpy(delta):
    """TRL's `delta`: the unclipped ratio is capped at delta, which binds only where A < 0."""
    rng = np.random.default_rng(7)
    log_ratio = (0.8 * rng.normal(size=(T, B))).astype(np.float32)
    _, _, _, advantages, _ = random_batch(7)
    low, high = 0.2, 0.28
    objective, clipped_low, clipped_high = losses.clipped_surrogate(
        jnp.asarray(log_ratio), jnp.asarray(advantages), low, high, delta
    )
    plain, _, _ = losses.clipped_surrogate(jnp.asarray(log_ratio), jnp.asarray(advantages), low, high)
    ratio = np.exp(log_ratio.astype(np.float64))
    binds = 0
    for t in range(T):
        for b in range(B):
            r, a = ratio[t, b], advantages[b]
            expected = min(min(r, delta) * a, min(max(r, 1 - low), 1 + high) * a)
            np.testing.assert_allclose(objective[t, b], expected, rtol=1e-5, atol=1e-6)
            if a > 0:  # delta > 1 + high: nothing changes for positive advantages
                np.testing.assert_allclose(objective[t, b], plain[t, b], rtol=1e-6)
            binds += bool(r > delta and a < 0)
            assert bool(clipped_low[t, b]) == (r < 1 - low and a < 0)
            assert bool(clipped_high[t, b]) == (r > 1 + high and a > 0)
    if delta < 2:
        assert binds > 0  # the random ratios reach the cap somewhere
    # Off (None or inf) is the plain objective, bit for bit.
    off, _, _ = losses.clipped_surrogate(jnp.asarray(log_ratio), jnp.asarray(advantages), low, high, jnp.inf)
    np.testing.assert_array_equal(off, plain)


def test_two_sided_clip_bounds_the_gradient_of_negative_advantages():
    grad = jax.grad(lambda lr, a, d: losses.clipped_surrogate(lr, a, 0.2, 0.2, d)[0])
    big = jnp.log(4.0)  # ratio 4
    assert float(grad(big, -1.0, None)) == pytest.approx(-4.0)  # PPO: r * A, its gradient grows with r
    assert float(grad(big, -1.0, 2.0)) == 0.0  # capped at delta: no gradient
    assert float(grad(jnp.log(1.5), -1.0, 2.0)) == pytest.approx(-1.5)  # below the cap: unchanged


def test_completed_mask_drops_columns_that_never_terminated():
    rng = np.random.default_rng(8)
    for _ in range(5):
        dones = (rng.random((T, B)) < 0.25).astype(np.float32)
        terminated = dones * (rng.random((T, B)) < 0.5)  # some ends are truncations
        mask = np.asarray(losses.first_episode_mask(jnp.asarray(dones)))
        got = np.asarray(losses.completed_mask(jnp.asarray(mask), jnp.asarray(terminated)))
        for b in range(B):
            first_end = next((t for t in range(T) if dones[t, b]), None)
            keep = first_end is not None and terminated[first_end, b] == 1
            np.testing.assert_array_equal(got[:, b], mask[:, b] * keep)
