"""Policies with memory: the carry's reset rule, re-reading rollouts, the truncation bootstrap,
the trainer's promises with a carry, and memory probes that only a recurrent network can solve."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces
from test_fit import assert_train_is_two_chunks, bitwise_equal
from users_emitter import compile_as_users_do

import envs
import jaxpg
from jaxpg.core.recurrent import reset_carry
from jaxpg.core.rollout import Transition

TINY = dict(hidden_sizes=(16,), rnn_hidden_size=8, rnn_head_sizes=())
SMALL = {
    "ppo": dict(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4, **TINY),
    "reinforce": dict(num_envs=4, num_steps=24, total_timesteps=4 * 24 * 4, **TINY),
    "grpo": dict(num_groups=2, group_size=2, max_steps=24, total_timesteps=4 * 24 * 4, **TINY),
}

# Memory probes: the first observation is -1 or +1 at random, every later one 0; an episode
# lasts LENGTH steps. VALUE pays the first observation at the last step, whatever the actions, so
# V at step t is cue * gamma^(LENGTH - 1 - t): exact for a network that remembers the cue, 0 after
# the first step for one that cannot. ACTION pays 1 at the last step if action 1 is taken at a cue
# of +1 or action 0 at -1, else 0: 1 with memory, 0.5 at best without.
VALUE, ACTION = 0, 1
LENGTH = 4


@struct.dataclass
class RecallState(environment.EnvState):
    cue: jax.Array
    time: jax.Array


@struct.dataclass
class RecallParams(environment.EnvParams):
    kind: jax.Array = VALUE
    max_steps_in_episode: int = LENGTH


class Recall(environment.Environment):
    @property
    def default_params(self):
        return RecallParams()

    def reset_env(self, key, params):
        cue = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        return cue.reshape(1), RecallState(cue=cue, time=jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        last = state.time == LENGTH - 1
        matched = jnp.where(action == 1, 1.0, -1.0) == state.cue
        reward = jnp.where(last, jnp.where(params.kind == VALUE, state.cue, matched.astype(jnp.float32)), 0.0)
        state = state.replace(time=state.time + 1)
        return jnp.zeros((1,)), state, reward, last, {"discount": 1.0 - last}

    def get_obs(self, state, params=None, key=None):
        return jnp.where(state.time == 0, state.cue, 0.0).reshape(1)

    def is_terminal(self, state, params):
        return state.time >= LENGTH

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


@pytest.fixture(scope="module")
def cartpole_trainers():
    env, params = envs.make("CartPole-v1")
    return {algo: jaxpg.make_trainer(algo, env, params, policy="gru", **config) for algo, config in SMALL.items()}


@pytest.fixture(scope="module")
def cut_episodes():
    """A GRU PPO trainer on CartPole whose training episodes are cut every 5 steps (truncations),
    a fresh state with random stored carries, and a rollout of 15 steps from there, whose last
    step ends every episode."""
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, policy="gru", max_episode_steps=5, **SMALL["ppo"])
    state = trainer.init(jax.random.key(0))
    # Stored carries off their initial values, as a later iteration's are.
    state = state.replace(carry=jax.tree.map(lambda x: jax.random.normal(jax.random.key(5), x.shape), state.carry))
    (_, _, carry), batch = trainer.collect(state, params, state.env_state, state.obs, jax.random.key(1), 15,
                                           carry=state.carry["policy"])
    return trainer, state, carry, batch


def test_rollouts_reset_the_carry_at_episode_boundaries_and_updates_re_read_them(cut_episodes):
    """The rollout resets each environment's carry after every step that ends its episode, and
    `rollout_outputs` re-reads the rollout from the stored carry to the same log-probabilities."""
    trainer, state, carry, batch = cut_episodes
    outputs, log_std = trainer.rollout_outputs(state.params, state.obs_stats, batch, state.carry["policy"])
    np.testing.assert_allclose(trainer.head.log_prob(outputs, log_std, batch.action), batch.log_prob, atol=1e-5)
    # Where the previous step ended an episode, the policy reads the observation from a fresh carry...
    fresh, _ = trainer.policy_outputs(state.params, state.obs_stats, batch.obs)
    dones = np.asarray(batch.terminated | batch.truncated)
    starts = np.concatenate([np.zeros((1, dones.shape[1]), bool), dones[:-1]])
    assert starts.sum() >= 8 and dones[-1].all()
    np.testing.assert_allclose(np.asarray(outputs)[starts], np.asarray(fresh)[starts], atol=1e-6)
    # ...and elsewhere from its memory, which changes what it outputs.
    assert not np.allclose(np.asarray(outputs)[~starts], np.asarray(fresh)[~starts], atol=1e-4)
    # The carry handed on is reset, the rollout's last step having ended every episode.
    np.testing.assert_array_equal(np.asarray(carry), np.asarray(trainer.initial_carry(4)["policy"]))


def test_the_truncation_bootstrap_reads_the_final_observation_with_the_carry_that_saw_the_step(cut_episodes):
    trainer, state, _, batch = cut_episodes
    values, next_values, _ = trainer.rollout_values(state.params, state.obs_stats, batch, state.carry["value"],
                                                    bootstrap=True)
    assert_values_read_step_by_step(trainer, state, batch, values, next_values, state.carry["value"],
                                    trainer.initial_carry(4)["value"])


def assert_values_read_step_by_step(trainer, state, batch, values, next_values, carry, initial):
    """Step by step, for every environment at once: V(obs_t) from the carry, V(final_obs_t) from
    the carry after obs_t, then the reset."""
    value_step = jax.jit(trainer.value_step)  # one step's program, compiled once for the loop
    assert np.asarray(batch.truncated).sum() >= 8
    for t in range(batch.reward.shape[0]):
        carry, value = value_step(state.params, state.obs_stats, carry, batch.obs[t])
        _, final_value = value_step(state.params, state.obs_stats, carry, batch.final_obs[t])
        np.testing.assert_allclose(values[t], value, atol=1e-5)
        np.testing.assert_allclose(next_values[t], final_value, atol=1e-5)
        carry = reset_carry(carry, batch.terminated[t] | batch.truncated[t], initial)


def test_a_shared_core_reads_the_policys_cell_for_the_value_and_trains_it_with_the_value_loss():
    """PPO's `shared_core`: one torso and cell for policy and value (one carry); the value read
    step by step from the policy's carry equals the re-read of a rollout, the update's joint read
    equals the separate ones, and the value loss's gradient reaches the shared cell."""
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, policy="gru", shared_core=True, max_episode_steps=5,
                                 **SMALL["ppo"])
    state = trainer.init(jax.random.key(0))
    # The value's own parameters are its readout's (here one layer: rnn_head_sizes=()).
    assert state.carry["value"] == () and set(state.params["value"]["params"]) == {"Dense_0"}
    state = state.replace(carry={"policy": jax.random.normal(jax.random.key(5), state.carry["policy"].shape),
                                 "value": ()})
    (_, _, _), batch = trainer.collect(state, params, state.env_state, state.obs, jax.random.key(1), 15,
                                       carry=state.carry["policy"])
    values, next_values, value_carry = trainer.rollout_values(state.params, state.obs_stats, batch,
                                                              trainer.value_carry(state.carry), bootstrap=True)
    assert value_carry == ()
    assert_values_read_step_by_step(trainer, state, batch, values, next_values, state.carry["policy"],
                                    trainer.initial_carry(4)["policy"])
    outputs, log_std, joint_values = trainer.rollout_outputs_and_values(state.params, state.obs_stats, batch,
                                                                        state.carry)
    np.testing.assert_allclose(trainer.head.log_prob(outputs, log_std, batch.action), batch.log_prob, atol=1e-5)
    np.testing.assert_allclose(joint_values, values, atol=1e-6)
    grads = jax.grad(lambda p: trainer.rollout_values(p, state.obs_stats, batch, state.carry["policy"]).sum())(
        state.params)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(grads["policy"]["params"]["core"]))
    with pytest.raises(ValueError, match="shared_core=True shares a recurrent policy's torso and cell"):
        jaxpg.make_trainer("ppo", env, params, shared_core=True)
    with pytest.raises(ValueError, match="accepted with it: policy_network=None and value_network=None"):
        jaxpg.make_trainer("ppo", env, params, policy="gru", shared_core=True,
                           value_network=trainer.value_net)


def test_a_recurrent_run_keeps_the_trainers_promises(cartpole_trainers, tmp_path):
    """PPO with a GRU at tiny sizes, in `fit`: a run in two chunks, killed after the first and
    resumed from its checkpoint (the carry saved and restored), ends bit for bit where the same
    run in one chunk ends; and each seed of that vmapped run is the seed's single run (to float
    rounding: XLA batches a vmapped program's sums differently). The same promises through
    `step`, `iterate` and `train` for every algorithm are the integration tests below."""
    trainer = cartpole_trainers["ppo"]
    keys = jax.random.split(jax.random.key(3), 2)
    whole, whole_metrics = jaxpg.fit(trainer, keys, chunk_size=4, progress=False)
    parts_dir = str(tmp_path / "parts")
    jaxpg.fit(trainer, keys, out=parts_dir, chunk_size=2, checkpoint_every=2, progress=False)
    shutil.rmtree(os.path.join(parts_dir, "checkpoints", "4"))
    resumed, resumed_metrics = jaxpg.fit(trainer, keys, out=parts_dir, chunk_size=2, checkpoint_every=2,
                                         progress=False, resume=True)
    assert bitwise_equal(whole, resumed)
    assert np.asarray(whole.carry["policy"]).any()  # the carry itself was saved and restored
    for name in whole_metrics:
        assert np.array_equal(whole_metrics[name], resumed_metrics[name], equal_nan=True), name
    single, single_metrics = jax.jit(trainer.train)(keys[1])
    assert np.array_equal(whole_metrics["episode_return"][1], single_metrics["episode_return"], equal_nan=True)
    for x, y in zip(jax.tree.leaves((whole.params, whole.carry)), jax.tree.leaves((single.params, single.carry))):
        np.testing.assert_allclose(np.asarray(x)[1], np.asarray(y), rtol=1e-4, atol=1e-5)


# The unit tier proves the mechanics (the reset rule, re-reading, the bootstrap, act, the checks)
# and, at tiny sizes for PPO, the promises above (sharding: tests/test_recurrent_sharded.py); the
# same promises through step, iterate and train for every algorithm, and the learning probes below,
# compile more and larger programs, so they run under -m integration, which .ci/run runs too.
@pytest.mark.integration
def test_iterate_is_steps_bit_for_bit_and_a_vmapped_seed_is_the_single_run(cartpole_trainers):
    """The carry flows through `iterate` as through `step` (chunks compose: the rest of the chain
    is tests/test_trainer_api.py's), and a seed's run vmapped beside another is that seed's run."""
    trainer = cartpole_trainers["ppo"]
    start = trainer.init(jax.random.key(1))
    step = compile_as_users_do(trainer.step, start)
    stepped, first = step(start)
    stepped, second = step(stepped)
    iterated, metrics = compile_as_users_do(trainer.iterate, start, 2, static_argnums=1)(start)
    assert bitwise_equal(stepped, iterated)
    for name in metrics:
        assert np.array_equal(np.asarray(metrics[name]), np.stack([first[name], second[name]]), equal_nan=True), name
    other = trainer.init(jax.random.key(2))
    pair = jax.tree.map(lambda a, b: jnp.stack([a, b]), other, start)
    batched, _ = jax.jit(jax.vmap(trainer.step))(pair)
    single, _ = step(start)
    for x, y in zip(jax.tree.leaves((batched.params, batched.carry)), jax.tree.leaves((single.params, single.carry))):
        np.testing.assert_allclose(np.asarray(x)[1], np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("algo", list(SMALL))
def test_chunks_of_train_compose_bit_for_bit(algo, cartpole_trainers):
    assert_train_is_two_chunks(cartpole_trainers[algo], jax.random.key(1))


@pytest.mark.integration
def test_a_sweep_of_a_recurrent_policy_equals_its_settings_trained_one_by_one(tmp_path):
    options = {**SMALL["ppo"], "policy": "gru", "lr_schedule": "constant"}
    rows = jaxpg.sweep("CartPole-v1", "ppo", grid={"lr": [1e-3, 1e-2]}, seeds=2, options=options, preset=None,
                       out=str(tmp_path), progress=False, eval_episodes=4)
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, **options)
    keys, eval_keys = jax.random.split(jax.random.key(0), 2), jax.random.split(jax.random.key(1), 2)
    assert sorted(row["lr"] for row in rows) == [1e-3, 1e-2]
    for row in rows:
        state, _ = jaxpg.fit(trainer, keys, {"lr": np.full(2, row["lr"], np.float32)}, progress=False)
        alone = np.asarray(jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, 4))(state, eval_keys)).mean(axis=1)
        np.testing.assert_array_equal(np.asarray(row["eval_per_seed"], np.float32), alone.astype(np.float32))


def test_act_takes_and_returns_the_carry_and_evaluate_uses_it(cartpole_trainers):
    trainer = cartpole_trainers["ppo"]
    state = trainer.init(jax.random.key(4))
    obs = jnp.linspace(-0.1, 0.1, 20).reshape(5, 4)
    actions, carry = trainer.act(state, obs, jax.random.key(1))
    assert actions.shape == (5,) and carry.shape == (5, 8)
    again, moved = trainer.act(state, obs, deterministic=True, carry=carry)
    assert again.shape == (5,) and not np.allclose(carry, moved)
    single, single_carry = trainer.act(state, obs[0], deterministic=True)
    assert single.shape == () and single_carry.shape == (8,)
    returns = jaxpg.evaluate(trainer, state, jax.random.key(2), num_episodes=3)
    assert returns.shape == (3,) and bool((returns >= 1).all())


def test_bad_recurrent_input_is_rejected_before_compiling():
    env, params = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="num_minibatches=3 must divide num_envs=4"):
        jaxpg.make_trainer("ppo", env, params, policy="gru", num_envs=4, num_steps=6, num_minibatches=3)
    with pytest.raises(ValueError, match="rnn_hidden_size"):
        jaxpg.make_trainer("ppo", env, params, policy="gru", rnn_hidden_size=0)
    with pytest.raises(ValueError, match="rnn_hidden_size=32 sizes a recurrent network, and policy='mlp' has none"):
        jaxpg.make_trainer("ppo", env, params, rnn_hidden_size=32)


def probe_returns(algo, policy, options, seeds=2):
    """Trains `algo` on both memory probes (one vmapped program: probes x seeds) and returns the
    value network's error on the VALUE probe's steps and the ACTION probe's greedy return."""
    env = Recall()
    kinds = RecallParams(kind=jnp.repeat(jnp.array([VALUE, ACTION]), seeds),
                         max_steps_in_episode=jnp.full(2 * seeds, LENGTH))
    trainer = jaxpg.make_trainer(algo, env, env.default_params, policy=policy, **options)
    keys = jax.random.split(jax.random.key(0), 2 * seeds)
    state, _ = jax.jit(jax.vmap(lambda k, p: trainer.train(k, env_params=p)))(keys, kinds)
    evaluate = lambda s, k, p: jaxpg.evaluate(trainer, s, k, num_episodes=64, env_params=p)
    returns = np.asarray(jax.jit(jax.vmap(evaluate))(state, keys, kinds)).mean(axis=1)
    # Both cues' episodes, read step by step as a rollout would be.
    obs = jnp.zeros((LENGTH, 2, 1)).at[0, :, 0].set(jnp.array([1.0, -1.0]))
    gamma = float(trainer.hparams["gamma"])
    truth = np.array([1.0, -1.0])[None, :] * gamma ** (LENGTH - 1 - np.arange(LENGTH))[:, None]
    batch = Transition(obs, None, None, jnp.zeros((LENGTH, 2), bool), jnp.zeros((LENGTH, 2), bool),
                                     None, None)
    value_errors = []
    for i in range(seeds):
        one = jax.tree.map(lambda x, i=i: x[i], state)
        values = trainer.rollout_values(one.params, one.obs_stats, batch)
        value_errors.append(float(np.abs(np.asarray(values) - truth).max()))
    return np.asarray(value_errors), returns[seeds:]


PROBE = {
    "ppo": dict(num_envs=16, num_steps=16, num_minibatches=2, total_timesteps=16 * 16 * 60, lr=3e-3, ent_coef=0.0),
    "reinforce": dict(num_envs=32, total_timesteps=32 * LENGTH * 150, lr=3e-3),
    "grpo": dict(num_groups=8, group_size=4, total_timesteps=32 * LENGTH * 150, lr=3e-3),
}


@pytest.mark.integration
@pytest.mark.parametrize("algo", list(PROBE))
def test_a_policy_with_memory_acts_on_the_cue_and_its_value_is_exact(algo):
    value_error, action_return = probe_returns(algo, "gru", {**PROBE[algo], **TINY})
    if algo != "grpo":  # GRPO has no critic
        assert (value_error < 0.1).all(), value_error
    assert (action_return > 0.95).all(), action_return


@pytest.mark.integration
def test_without_memory_neither_is_possible():
    # The same torso; the recurrent sizes are refused without a recurrent policy.
    value_error, action_return = probe_returns("ppo", "mlp", {**PROBE["ppo"], "hidden_sizes": TINY["hidden_sizes"]})
    assert (value_error > 0.5).all(), value_error
    assert (action_return < 0.75).all(), action_return


def test_a_users_recurrent_module_is_carried_and_checked():
    import flax.linen as nn

    class Elman(nn.Module):
        """A user's recurrent policy: h' = tanh(W [h, obs]), logits = V h'."""

        @nn.compact
        def __call__(self, carry, obs):
            carry = jnp.tanh(nn.Dense(6)(jnp.concatenate([carry, obs], axis=-1)))
            return carry, (nn.Dense(2)(carry), jnp.zeros(()))

        def initial_carry(self, batch_shape=()):
            return jnp.zeros(tuple(batch_shape) + (6,))

    class NoLogStd(Elman):
        @nn.compact
        def __call__(self, carry, obs):
            return carry, nn.Dense(2)(obs)

    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, policy_network=Elman(), num_envs=4, num_steps=8)
    state = trainer.init(jax.random.key(0))
    assert trainer.recurrent and state.carry["policy"].shape == (4, 6) and state.carry["value"] == ()
    # Without `embed`/`recur`/`readout` the module is re-read whole at every step.
    (_, _, _), batch = trainer.collect(state, params, state.env_state, state.obs, jax.random.key(1), 6,
                                       carry=state.carry["policy"])
    outputs, log_std = trainer.rollout_outputs(state.params, state.obs_stats, batch, state.carry["policy"])
    np.testing.assert_allclose(trainer.head.log_prob(outputs, log_std, batch.action), batch.log_prob, atol=1e-5)
    with pytest.raises(ValueError, match="policy_network answers"):
        jaxpg.make_trainer("ppo", env, params, policy_network=NoLogStd(), num_envs=4, num_steps=8)


@pytest.mark.integration
def test_memory_chain_is_solved_with_memory_and_not_without():
    """gymnax's MemoryChain-bsuite at memory length 10 (its preset, a third of the budget): the GRU
    recalls the context bit on every seed; the MLP, the same settings otherwise, cannot (0 on average)."""
    import dataclasses

    from jaxpg import presets
    from jaxpg.presets.check import check_preset

    preset = presets.get("MemoryChain-bsuite-10", "ppo")
    shorter = dataclasses.replace(preset, options={**preset.options, "total_timesteps": 32_768})
    with_memory = check_preset(shorter, seeds=2, eval_episodes=32)
    assert min(with_memory["values"]) > 0.9, with_memory["values"]
    options = {k: v for k, v in shorter.options.items() if not k.startswith("rnn_")}
    mlp = dataclasses.replace(shorter, options={**options, "policy": "mlp"})
    without = check_preset(mlp, seeds=2, eval_episodes=32)
    assert max(without["values"]) < 0.5, without["values"]
