"""Learning on the token tasks with the causal transformer policy: RL alone on Copy-v0, and SFT
then GRPO on Addition-v0 (the SFT policy as start and KL reference), seeds vmapped; plus
jaxpg.sft's pieces. Sizes are tiny (2 digits, a 2-layer width-32 transformer) so each test
takes seconds; the thresholds sit well clear of the starting levels and can fail."""

import jax
import numpy as np
import pytest

import envs
import jaxpg
from jaxpg.algos import sft

pytestmark = pytest.mark.slow

NET = dict(policy="transformer", transformer_dim=32, transformer_layers=2, transformer_heads=2)


def test_rl_alone_lifts_partial_credit_on_copy_above_random():
    env, params = envs.make("Copy-v0", num_digits=2, reward="partial")
    trainer = jaxpg.make_trainer("grpo", env, params, **NET, num_groups=16, group_size=8,
                                 total_timesteps=16 * 8 * 3 * 60, lr=1e-3)
    state, metrics = trainer.train(jax.random.key(0))
    score = lambda s: float(jaxpg.evaluate(trainer, s, jax.random.key(7), 1024, deterministic=False).mean())
    random_level = score(trainer.init(jax.random.key(0)))  # the untrained, near-uniform policy
    trained = score(state)
    assert random_level < 0.1, random_level  # about 1/14 of the positions right by chance
    assert trained > random_level + 0.12, (random_level, trained)
    assert not np.asarray(metrics["nonfinite"]).any()


@pytest.fixture(scope="module")
def addition():
    """A partly trained SFT policy on 2-digit addition (about 40% exact, by design: room to
    improve), its trainer and its accuracy on a fixed set of 2048 sampled prompts."""
    env, params = envs.make("Addition-v0", num_digits=2)
    base = jaxpg.make_trainer("grpo", env, params, **NET)
    fit = jax.jit(lambda k: sft.fit_demonstrations(k, base, num_demonstrations=2048, num_updates=1000,
                                                    batch_size=64, lr=3e-3))
    policy_params, nll = fit(jax.random.key(0))
    score = jax.jit(lambda p: sft.exact_match(base, p, jax.random.key(5), 2048))
    return env, params, base, policy_params, nll, score


def test_sft_fits_demonstrations(addition):
    env, params, base, policy_params, nll, score = addition
    assert float(nll[-50:].mean()) < 0.5 * float(nll[0])
    accuracy = float(score(policy_params))
    assert 0.15 < accuracy < 0.8, accuracy  # partly trained: neither untrained nor solved
    # Greedy decoding of the same policy, and a random policy, for scale.
    untrained = base.policy_net.init(jax.random.key(1), base.reset_envs(jax.random.key(1), 1)[0])
    assert float(score(untrained)) < 0.01
    greedy = float(sft.exact_match(base, policy_params, jax.random.key(5), 2048, deterministic=True))
    assert greedy > 0.15


def test_grpo_from_sft_beats_the_sft_policy_on_every_seed(addition):
    env, params, base, policy_params, _, score = addition
    trainer = jaxpg.make_trainer("grpo", env, params, **NET, policy_params=policy_params, num_groups=16,
                                 group_size=8, total_timesteps=16 * 8 * 4 * 60, lr=5e-4, beta=0.04)
    state, metrics = jax.jit(jax.vmap(trainer.train))(jax.random.split(jax.random.key(1), 4))
    # The SFT policy is both the start and the KL reference.
    for ref, sft_leaf in zip(jax.tree.leaves(state.extra.reference), jax.tree.leaves(policy_params)):
        np.testing.assert_array_equal(ref, np.broadcast_to(sft_leaf, ref.shape))
    before = float(score(policy_params))
    after = np.asarray(jax.jit(jax.vmap(score))(state.params["policy"]))
    assert np.all(after > before + 0.04), (before, after)
    kl = np.asarray(metrics["kl_to_reference"])
    assert np.all(kl[:, 0] < 1e-3) and np.all(kl[:, -1] > kl[:, 0])


def test_sft_step_by_step_for_networks_without_sequence_logits():
    env, params = envs.make("Copy-v0", num_digits=2)
    trainer = jaxpg.make_trainer("grpo", env, params, hidden_sizes=(32,))
    data = sft.demonstration_data(jax.random.key(0), trainer, 8)
    T = params.max_steps_in_episode
    assert data[0].shape == (8 * T, env.max_len(params) + 1) and data[1].shape == data[2].shape == (8 * T,)
    policy_params, nll = jax.jit(lambda k: sft.fit_demonstrations(k, trainer, 256, 200, 64, 1e-2))(jax.random.key(0))
    assert float(nll[-20:].mean()) < 0.7 * float(nll[0])
    jaxpg.make_trainer("grpo", env, params, hidden_sizes=(32,), policy_params=policy_params)  # accepted
    with pytest.raises(ValueError, match="envs.tokens task"):
        sft.fit_demonstrations(jax.random.key(0), jaxpg.make_trainer("grpo", *envs.make("CartPole-v1")))
