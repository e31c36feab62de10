"""jaxpg.core.transformer: causality, shapes under batch axes, the current-position contract, and a
tiny model that overfits Copy demonstrations by teacher forcing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import envs
from envs.tokens import VOCAB_SIZE as V
from jaxpg.core.transformer import from_env

ENV, ENV_PARAMS = envs.make("Copy-v0", num_digits=3)
MODEL, VALUE = from_env(ENV, ENV_PARAMS, embed_dim=32, num_layers=2, num_heads=2)
L = MODEL.max_len

# Every call is jitted (flax run op by op compiles each op on its own, far slower), and the
# tests share one model and one set of parameters so that each program compiles once.
call = jax.jit(MODEL.apply)
seq = jax.jit(lambda p, t: MODEL.apply(p, t, method=MODEL.sequence_logits))


@pytest.fixture(scope="module")
def params():
    return jax.jit(MODEL.init)(jax.random.key(0), jnp.zeros((L + 1,), jnp.int32))


def random_obs(seed, batch):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, V, batch + (L,))
    return jnp.asarray(np.concatenate([tokens, rng.integers(1, L + 1, batch + (1,))], -1), jnp.int32)


def test_causal_and_current_position_is_sequence_logits(params):
    assert L == ENV.max_len(ENV_PARAMS) == 8
    tokens = random_obs(2, (3,))[:, :L]
    base = seq(params, tokens)
    assert base.shape == (3, L, V)
    for j in (0, 4, L - 1):
        changed = tokens.at[:, j].set((tokens[:, j] + 1) % V)
        out = seq(params, changed)
        np.testing.assert_array_equal(out[:, :j], base[:, :j])  # earlier positions never see j
        assert not np.allclose(out[:, j], base[:, j])  # and j itself does
    # The policy's logits are sequence_logits at the last written token, p - 1; tokens from p
    # on (the rest of the buffer) change nothing.
    for p in (1, 5, L):
        obs = jnp.concatenate([tokens, jnp.full((3, 1), p)], -1)
        logits, log_std = call(params, obs)
        np.testing.assert_allclose(logits, base[:, p - 1], rtol=1e-5, atol=1e-6)
        assert log_std.shape == () and float(log_std) == 0.0
        later = obs.at[:, p:L].set((obs[:, p:L] + 3) % V)
        np.testing.assert_array_equal(call(params, later)[0], logits)


def test_shapes_under_leading_axes(params):
    obs = random_obs(3, (5, 4))
    shape = lambda f, *args: jax.eval_shape(f, *args)  # noqa: E731  (traces, compiles nothing)
    # A trainer initialises with float zeros of the observation's shape; that works too.
    assert jax.tree.map(lambda x: x.shape, shape(MODEL.init, jax.random.key(0), jnp.zeros(L + 1))) == \
        jax.tree.map(lambda x: x.shape, params)
    value_params = shape(VALUE.init, jax.random.key(0), obs)
    for x in (obs, obs[0], obs[0, 0]):
        logits, log_std = shape(MODEL.apply, params, x)
        assert logits.shape == x.shape[:-1] + (V,) and log_std.shape == ()
        assert shape(VALUE.apply, value_params, x).shape == x.shape[:-1]
    # Leading axes are only batch axes: each (t, n) entry is its own sequence at its own p.
    every = np.asarray(seq(params, obs[..., :L]))
    expected = np.take_along_axis(every, np.asarray(obs[..., L:, None]) - 1, -2)[..., 0, :]
    np.testing.assert_allclose(call(params, obs)[0], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=rf"max_len \+ 1 = {L + 1}"):
        MODEL.apply(params, jnp.zeros((3, L)))


@pytest.mark.slow
def test_overfits_copy_demonstrations(params):
    tokens, targets, mask = ENV.demonstration_sequences(jax.random.key(0), ENV_PARAMS, 16)
    opt = optax.adam(3e-3)

    def loss_fn(params):
        logits = MODEL.apply(params, tokens, method=MODEL.sequence_logits)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        accuracy = jnp.sum((logits.argmax(-1) == targets) * mask) / jnp.sum(mask)
        return jnp.sum(ce * mask) / jnp.sum(mask), accuracy

    @jax.jit
    def train(params):
        def step(carry, _):
            params, opt_state = carry
            (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = opt.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), (loss, accuracy)

        return jax.lax.scan(step, (params, opt.init(params)), None, length=200)[1]

    losses, accuracy = train(params)
    assert float(losses[-1]) < 0.1 * float(losses[0])
    assert float(accuracy[-1]) > 0.9, (float(accuracy[-1]), float(losses[-1]))
