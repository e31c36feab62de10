import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from scipy import stats

from jaxpg.core.distributions import CONTINUOUS, make_action_head

LOW, HIGH = np.array([-2.0, 0.0, -1.0]), np.array([2.0, 3.0, 5.0])
BOX = spaces.Box(LOW, HIGH, (3,))


def head_inputs(kind, seed=0, batch=7):
    rng = np.random.default_rng(seed)
    head = make_action_head(BOX, kind, init_std=0.7)
    outputs = jnp.asarray(rng.normal(size=(batch, head.num_outputs)), jnp.float32)
    log_std = jnp.asarray(rng.normal(scale=0.3, size=(3,)), jnp.float32)
    return head, outputs, log_std


def test_categorical_log_prob_entropy_sampling():
    head = make_action_head(spaces.Discrete(4))
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)), jnp.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    actions = jnp.array([0, 1, 2, 3, 1])
    np.testing.assert_allclose(head.log_prob(logits, 0.0, actions), np.log(probs[np.arange(5), actions]), rtol=1e-5)
    np.testing.assert_allclose(head.entropy(logits, 0.0), stats.entropy(probs, axis=-1), rtol=1e-5)
    raw, log_prob = head.sample(logits, 0.0, jax.random.key(0))
    assert raw.shape == (5,) and set(np.asarray(raw).tolist()) <= {0, 1, 2, 3}
    np.testing.assert_allclose(log_prob, head.log_prob(logits, 0.0, raw), rtol=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "fixed_std_gaussian"])
def test_gaussians_against_scipy(kind):
    head, mean, log_std = head_inputs(kind)
    std = np.exp(np.asarray(log_std)) if kind == "gaussian" else np.full(3, 0.7)
    raw, log_prob = head.sample(mean, log_std, jax.random.key(1))
    expected = stats.norm(np.asarray(mean), std).logpdf(np.asarray(raw)).sum(-1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.entropy(mean, log_std), stats.norm(0, std).entropy().sum() * np.ones(7), rtol=1e-5)
    action = head.to_env(raw)
    np.testing.assert_allclose(action, np.clip(raw, LOW, HIGH))


def test_squashed_gaussian_density_by_change_of_variables():
    head, mean, log_std = head_inputs("squashed_gaussian")
    std = np.exp(np.asarray(log_std))
    raw, log_prob = head.sample(mean, log_std, jax.random.key(2))
    u = np.asarray(raw, np.float64)
    half = (HIGH - LOW) / 2
    # log p(a) = log N(u) - log |da/du|, a = low + (tanh u + 1) half
    expected = stats.norm(np.asarray(mean), std).logpdf(u).sum(-1) - np.log(half * (1 - np.tanh(u) ** 2)).sum(-1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-4)
    action = np.asarray(head.to_env(raw))
    assert (action >= LOW).all() and (action <= HIGH).all()
    np.testing.assert_allclose(action, LOW + (np.tanh(u) + 1) * half, rtol=1e-5, atol=1e-5)
    # The documented entropy is the pre-tanh Gaussian's plus the affine term: an upper bound.
    bound = stats.norm(0, std).entropy().sum() + np.log(half).sum()
    np.testing.assert_allclose(head.entropy(mean, log_std), bound * np.ones(7), rtol=1e-5)
    samples = head.sample(mean[:1].repeat(20000, 0), log_std, jax.random.key(3))[1]
    assert float(-samples.mean()) <= bound


def test_squashed_gaussian_log_prob_is_finite_when_saturated():
    head, _, log_std = head_inputs("squashed_gaussian")
    raw = jnp.array([[30.0, -30.0, 12.0]])
    assert bool(jnp.isfinite(head.log_prob(jnp.zeros((1, 3)), log_std, raw)).all())


def test_beta_against_scipy():
    head, outputs, log_std = head_inputs("beta")
    raw, log_prob = head.sample(outputs, log_std, jax.random.key(4))
    soft = np.log1p(np.exp(np.asarray(outputs, np.float64))) + 1
    alpha, beta = soft[:, :3], soft[:, 3:]
    x = np.asarray(raw, np.float64)
    expected = stats.beta(alpha, beta).logpdf(x).sum(-1) - np.log(HIGH - LOW).sum()
    np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-4)
    expected_entropy = stats.beta(alpha, beta).entropy().sum(-1) + np.log(HIGH - LOW).sum()
    np.testing.assert_allclose(head.entropy(outputs, log_std), expected_entropy, rtol=1e-4, atol=1e-4)
    action = np.asarray(head.to_env(raw))
    assert (action > LOW).all() and (action < HIGH).all()


@pytest.mark.parametrize("kind", CONTINUOUS)
def test_sampling_within_bounds_and_mode(kind):
    head, outputs, log_std = head_inputs(kind, batch=1)
    outputs = outputs.repeat(5000, 0) * 3.0
    raw, log_prob = head.sample(outputs, log_std, jax.random.key(5))
    action = np.asarray(head.to_env(raw))
    assert action.shape == (5000, 3)
    assert (action >= LOW).all() and (action <= HIGH).all()
    assert bool(jnp.isfinite(log_prob).all())
    mode = np.asarray(head.to_env(head.mode(outputs[:1], log_std)))
    assert (mode >= LOW).all() and (mode <= HIGH).all()


def test_bad_choices_name_the_field():
    with pytest.raises(ValueError, match="distribution='beta'.*Discrete"):
        make_action_head(spaces.Discrete(2), "beta")
    with pytest.raises(ValueError, match="distribution='categorical'.*continuous"):
        make_action_head(BOX, "categorical")
    with pytest.raises(ValueError, match="distribution='poisson' is unknown; accepted: categorical"):
        make_action_head(BOX, "poisson")
    with pytest.raises(ValueError, match="finite"):
        make_action_head(spaces.Box(-jnp.inf, jnp.inf, (2,)), "beta")


@pytest.mark.parametrize("kind", ["gaussian", "squashed_gaussian"])
def test_learned_log_std_has_a_gradient_outside_its_bounds_and_the_same_value_inside(kind):
    head = make_action_head(BOX, kind)
    mean = jnp.zeros((4, 3))
    raw = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    loss = lambda log_std: -jnp.sum(head.log_prob(mean, log_std, raw)) - jnp.sum(head.entropy(mean, log_std))
    for outside in (jnp.full(3, 3.5), jnp.full(3, -7.0)):
        assert np.all(np.asarray(jax.grad(loss)(outside)) != 0.0)
        # The value is still the clamped one.
        clamped = jnp.clip(outside, -5.0, 2.0)
        np.testing.assert_array_equal(head.log_prob(mean, outside, raw), head.log_prob(mean, clamped, raw))
    inside = jnp.asarray([-4.9, 0.3, 1.9], jnp.float32)
    std = head.distribution(mean, inside).stddev()
    np.testing.assert_array_equal(std, jnp.broadcast_to(jnp.exp(inside), (4, 3)))


def test_init_std_outside_the_log_std_bounds_is_refused_naming_the_range():
    import envs
    import jaxpg

    env, env_params = envs.make("LQR-v0")
    with pytest.raises(ValueError, match=r"init_std=10.*\[0\.00673795, 7\.38906\]"):
        jaxpg.make_trainer("reinforce", env, env_params, init_std=10.0)
    with pytest.raises(ValueError, match=r"init_std=0\.001.*\[0\.00673795, 7\.38906\]"):
        make_action_head(BOX, "gaussian", init_std=1e-3)
    # A fixed std is used as given, not through the clamped log_std.
    assert make_action_head(BOX, "fixed_std_gaussian", init_std=10.0).init_std == 10.0
