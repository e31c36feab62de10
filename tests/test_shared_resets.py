"""`AutoResetEnv.step_batch` and PPO's `resets_per_step`: K fresh episodes per step for a batch.

The rule: the environments that end at a step, in batch order, take the resets of the first K of
them, each drawn with its own key as `step` draws it; the j-th end starts from the (j mod K)-th
fresh episode. So the batch step is `vmap(step)` wherever at most K episodes end at once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import jaxpg

NUM_ENVS = 16


def states_where_several_end():
    """CartPole states, keys and actions for one step at which at least 3 of 16 episodes end."""
    env, params = envs.make("CartPole-v1")
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), NUM_ENVS), params)
    for t in range(500):
        keys = jax.random.split(jax.random.key(t + 1), NUM_ENVS)
        actions = jax.random.randint(jax.random.key(-t), (NUM_ENVS,), 0, 2)
        out = step(keys, state, actions, params)
        if int((out[3] | out[4]).sum()) >= 3:
            return env, params, state, keys, actions, out
        state = out[1]
    raise AssertionError("no step with 3 ends in 500")


@pytest.mark.parametrize("num_resets", [1, 2, NUM_ENVS])
def test_the_jth_end_starts_from_the_fresh_episode_of_the_j_mod_kth(num_resets):
    env, params, state, keys, actions, (obs, _, reward, terminated, truncated, info) = states_where_several_end()
    batch = jax.jit(env.step_batch, static_argnums=4)(keys, state, actions, params, num_resets)
    b_obs, b_state, b_reward, b_terminated, b_truncated, b_info = batch
    # Rewards, both end flags and the pre-reset observation are `step`'s (float rounding aside:
    # the two are different programs, which XLA may fuse differently).
    np.testing.assert_array_equal(b_terminated, terminated)
    np.testing.assert_array_equal(b_truncated, truncated)
    np.testing.assert_array_equal(b_reward, reward)
    np.testing.assert_allclose(b_info["final_observation"], info["final_observation"], rtol=1e-6, atol=1e-7)
    ends = np.flatnonzero(np.asarray(terminated | truncated))
    expected = np.array(obs)
    for j, env_index in enumerate(ends):
        expected[env_index] = np.asarray(obs)[ends[j % num_resets]]  # `step`'s reset of that end
    np.testing.assert_allclose(b_obs, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b_state.x, expected[:, 0], rtol=1e-6, atol=1e-7)  # the state is the reset's too
    if num_resets < len(ends):  # the ends beyond the K-th share fresh episodes
        assert len({tuple(row) for row in np.asarray(b_obs)[ends]}) == num_resets


def test_ppo_with_shared_resets_trains_and_each_bad_setting_is_refused():
    env, params = envs.make("CartPole-v1")
    options = dict(num_envs=8, num_steps=16, total_timesteps=8 * 16 * 2)
    shared = jaxpg.make_trainer("ppo", env, params, resets_per_step=1, **options)
    own = jaxpg.make_trainer("ppo", env, params, **options)
    _, shared_metrics = shared.train(jax.random.key(0))
    _, own_metrics = own.train(jax.random.key(0))
    assert np.isfinite(np.asarray(shared_metrics["loss"])).all()
    # The same keys: the runs part only where two episodes end at one step (the second then
    # starts from a copy of the first's fresh episode), which 8 random CartPole agents do.
    assert not np.array_equal(shared_metrics["loss"], own_metrics["loss"])

    with pytest.raises(ValueError, match=r"resets_per_step=9 must be at most num_envs=8"):
        jaxpg.make_trainer("ppo", env, params, resets_per_step=9, **options)
    with pytest.raises(ValueError, match=r"resets_per_step=0 must be a positive integer"):
        jaxpg.make_trainer("ppo", env, params, resets_per_step=0, **options)
    with pytest.raises(ValueError, match=r"TimeLimit \(max_episode_steps\) has none; accepted here"):
        jaxpg.make_trainer("ppo", env, params, resets_per_step=1, max_episode_steps=50, **options)
    gymnax_env, gymnax_params = envs.make("Acrobot-v1")
    with pytest.raises(ValueError, match=r"Acrobot has none; accepted here: resets_per_step=None"):
        jaxpg.make_trainer("ppo", gymnax_env, gymnax_params, resets_per_step=1, **options)
    with pytest.raises(ValueError, match=r"resets_per_step"):
        jaxpg.make_trainer("reinforce", env, params, resets_per_step=1)


def test_a_batch_step_runs_under_vmap_over_runs():
    """Seeds vmap over the batch step as over `step` (the ends are ranked within each run)."""
    env, params, state, keys, actions, _ = states_where_several_end()
    twice = lambda tree: jax.tree.map(lambda x: jnp.stack([x, x]), tree)
    batched = jax.vmap(lambda k, s, a: env.step_batch(k, s, a, params, 1))(twice(keys), twice(state), twice(actions))
    alone = env.step_batch(keys, state, actions, params, 1)
    for b, a in zip(jax.tree.leaves(batched), jax.tree.leaves(alone)):
        np.testing.assert_allclose(b[0], a, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b[1], a, rtol=1e-6, atol=1e-7)


def test_evaluation_of_a_costly_reset_draws_one_fresh_episode_per_step_and_scores_the_same():
    """Evaluation counts first episodes only, so an environment whose class declares its reset
    costly is stepped with `step_batch(num_resets=1)`; any other (CartPole, a wrapper, whose
    class has no batch step) with `vmap(step)`."""
    from envs.episodes import episode_returns
    from envs.gymnax_api import GymnaxWrapper

    env, params = envs.make("CartPole-v1")
    calls = []

    class Recorded(type(env)):
        def step_batch(self, keys, states, actions, params, num_resets):
            calls.append(num_resets)
            return super().step_batch(keys, states, actions, params, num_resets)

    class Costly(Recorded):
        costly_reset = True

    policy = lambda obs, key: jax.random.randint(key, (obs.shape[0],), 0, 2)
    per_env = episode_returns(Recorded(), params, policy, jax.random.key(3), 32)
    assert calls == []
    batched = episode_returns(Costly(), params, policy, jax.random.key(3), 32)
    assert calls == [1]
    wrapped = episode_returns(GymnaxWrapper(Costly()), params, policy, jax.random.key(3), 32)
    assert calls == [1]
    np.testing.assert_array_equal(batched, per_env)
    np.testing.assert_array_equal(wrapped, per_env)
    assert len(np.unique(np.asarray(batched))) > 1  # episodes of several lengths


@pytest.mark.parametrize("algo, options", [
    ("reinforce", dict(num_envs=8, num_steps=64, total_timesteps=8 * 64 * 2)),
    ("grpo", dict(num_groups=4, group_size=2, max_steps=64, total_timesteps=8 * 64 * 2)),
])
def test_first_episode_algorithms_share_a_costly_reset_and_learn_the_same(algo, options):
    """REINFORCE and GRPO mask every step after an environment's first episode, so for an
    environment whose reset is costly their rollouts draw one fresh episode per step."""
    env, params = envs.make("CartPole-v1")

    class Costly(type(env)):
        costly_reset = True

    plain = jaxpg.make_trainer(algo, env, params, **options)
    shared = jaxpg.make_trainer(algo, Costly(), params, **options)
    assert plain.resets_per_step is None and shared.resets_per_step == 1
    _, plain_metrics = plain.train(jax.random.key(0))
    _, shared_metrics = shared.train(jax.random.key(0))
    for name in ("episode_return", "loss"):
        np.testing.assert_allclose(shared_metrics[name], plain_metrics[name], rtol=1e-5, atol=1e-6)
    ppo = jaxpg.make_trainer("ppo", Costly(), params, num_envs=8, num_steps=16)
    assert ppo.resets_per_step is None  # PPO's later episodes count: sharing stays its option


@pytest.mark.integration
def test_a_run_with_shared_resets_is_two_chunks_to_the_bit():
    """The batch step lives inside the rollout, so chunks compose as they do without it."""
    from test_fit import assert_train_is_two_chunks

    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, num_envs=8, num_steps=16, total_timesteps=8 * 16 * 8,
                                 hidden_sizes=(16,), resets_per_step=1)
    assert_train_is_two_chunks(trainer, jax.random.key(1))
