"""RLHF pieces: reward model, SFT, the learned-reward wrapper, REINFORCE's KL penalty, and
KL-regularised fine-tuning that raises the true reward over SFT."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import envs
import jaxpg
from envs.search_ranking import expert_action
from envs.wrappers import LearnedReward
from jaxpg.algos import rlhf


@struct.dataclass
class BanditState(environment.EnvState):
    context: jax.Array


class TargetBandit(environment.Environment):
    """A 4-context bandit: the best 2-D action is a per-context target; reward
    -||a - target||^2 + N(0, 0.3^2). Tiny, so its programs compile in a second."""

    targets = jnp.array([[1.0, -1.0], [-1.0, 1.0], [0.5, 0.5], [-0.5, -1.5]])

    def reset_env(self, key, params):
        state = BanditState(time=jnp.int32(0), context=jax.random.randint(key, (), 0, 4))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        reward = -jnp.sum((action - self.targets[state.context]) ** 2) + 0.3 * jax.random.normal(key)
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, reward, jnp.bool_(True), {}

    def get_obs(self, state, params=None, key=None):
        return jax.nn.one_hot(state.context, 4)

    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=1)

    def action_space(self, params=None):
        return spaces.Box(-3.0, 3.0, (2,), jnp.float32)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (4,), jnp.float32)


@pytest.mark.slow
def test_reward_model_learns_a_linear_reward_from_noise_free_preferences():
    obs_dim, action_dim, n = 6, 3, 2048
    w_obs, w_action = jnp.linspace(-1, 1, obs_dim), jnp.array([2.0, -1.0, 0.5])

    def pairs(key):
        ko, ka, kb = jax.random.split(key, 3)
        obs = jax.random.normal(ko, (n, obs_dim))
        a, b = jax.random.normal(ka, (n, action_dim)), jax.random.normal(kb, (n, action_dim))
        # The obs term cancels within a pair: only the action's part can be learned.
        ra, rb = obs @ w_obs + a @ w_action, obs @ w_obs + b @ w_action
        return rlhf.Preferences(obs, a, b, ra, rb, rlhf.rater_labels(key, ra, rb, 0.0))

    model = rlhf.RewardModel((32,))

    @jax.jit
    def run(key):
        params, losses = rlhf.train_reward_model(key, model, pairs(jax.random.key(1)), 500, 128, 3e-3)
        return losses, rlhf.pairwise_accuracy(params, model, pairs(jax.random.key(2)))

    losses, accuracy = run(jax.random.key(0))
    assert float(accuracy) >= 0.9, accuracy
    assert float(losses[-50:].mean()) < 0.5 * float(losses[:10].mean())
    # A noisy rater flips close calls; noise-free labels are hard, ties are 0.5.
    labels = rlhf.rater_labels(jax.random.key(3), jnp.array([1.0, 0.0, 2.0]), jnp.array([0.0, 1.0, 2.0]), 0.0)
    np.testing.assert_array_equal(labels, [1.0, 0.0, 0.5])
    noisy = rlhf.rater_labels(jax.random.key(3), jnp.full(20_000, 0.1), jnp.zeros(20_000), 0.1)
    assert abs(float(noisy.mean()) - float(jax.nn.sigmoid(1.0))) < 0.02


@pytest.mark.slow
def test_sft_lowers_nll_and_beats_the_zero_action_on_search_ranking():
    env, params = envs.make("SearchRanking-v0", n_products=500)
    trainer = jaxpg.make_trainer("grpo", env, params, hidden_sizes=(32,))

    @jax.jit
    def run(key, params):
        kd, kb, ke = jax.random.split(key, 3)
        demos = rlhf.collect_demonstrations(kd, env, params, lambda o: expert_action(o, env), 2048, noise_std=0.5)
        sft, nll = rlhf.behaviour_cloning(kb, trainer, demos, 400, 256, 3e-3)
        initial = rlhf.policy_nll(trainer.policy_net.init(kb, demos.obs[:1]), trainer, demos)
        both = jax.tree.map(lambda x: jnp.stack([x, jnp.zeros_like(x)]), sft)  # SFT, then a = 0
        rewards = jax.vmap(lambda p: rlhf.policy_rewards(trainer, p, ke, 2048, deterministic=True,
                                                                    env_params=params))(both)
        return initial, nll, rlhf.policy_nll(sft, trainer, demos), rewards["true_reward"].mean(axis=1), sft

    initial, nll, final, (sft_reward, zero_reward), sft = run(jax.random.key(0), params)
    assert float(final) < float(initial) - 5.0, (initial, final)
    assert np.isfinite(np.asarray(nll)).all()
    # The demonstrations' noise (std 0.5) sets the policy's std where every template is 0 (the
    # other dimensions also carry what the small network has not fitted of the templates).
    std = np.exp(np.asarray(sft["params"]["log_std"]))
    unused = np.flatnonzero((np.asarray(envs.search_ranking.EXPERT_TEMPLATES) == 0).all(axis=0))
    np.testing.assert_allclose(std[unused], 0.5, atol=0.1)
    assert float(sft_reward) > float(zero_reward) + 3.0, (sft_reward, zero_reward)


def test_sft_rejects_heads_it_cannot_clone():
    env, params = envs.make("SearchRanking-v0", n_products=100)
    trainer = jaxpg.make_trainer("grpo", env, params, distribution="beta")
    demos = rlhf.Demonstrations(jnp.zeros((4, 17)), jnp.zeros((4, 10)))
    with pytest.raises(ValueError, match="distribution='beta' cannot be behaviour-cloned"):
        rlhf.behaviour_cloning(jax.random.key(0), trainer, demos)


@pytest.mark.integration
def test_learned_reward_wrapper_replaces_the_reward_and_keeps_the_true_one():
    env, params = envs.make("CartPole-v1")
    wrapped = LearnedReward(env, lambda obs, action: 10.0 * obs[2] + action)
    obs, state = wrapped.reset(jax.random.key(0), params)
    step = jax.jit(wrapped.step)
    for t in range(3):
        next_obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, 1, params)
        np.testing.assert_allclose(reward, 10.0 * obs[2] + 1, rtol=1e-6)
        assert float(info["true_reward"]) == 1.0
        obs = next_obs
    assert wrapped.num_actions == env.num_actions  # attributes pass through
    # Any trainer runs on it; its episode return is the learned reward's.
    trainer = jaxpg.make_trainer("reinforce", wrapped, params, num_envs=4, num_steps=32,
                                 total_timesteps=4 * 32, hidden_sizes=(8,))
    _, metrics = trainer.train(jax.random.key(0))
    assert np.isfinite(np.asarray(metrics["episode_return"])).all()


SMALL_REINFORCE = dict(num_envs=4, num_steps=64, total_timesteps=4 * 64 * 3, hidden_sizes=(16,))


@pytest.fixture(scope="module")
def cartpole_reinforce():
    """One REINFORCE trainer for the module, so its compiled programs are reused."""
    env, params = envs.make("CartPole-v1")
    return env, params, jaxpg.make_trainer("reinforce", env, params, **SMALL_REINFORCE)


@pytest.mark.integration
def test_reinforce_kl_penalty(cartpole_reinforce):
    _, _, trainer = cartpole_reinforce
    # beta = 0 leaves the rewards bit for bit as they are, so everything downstream (returns,
    # weights, gradients) is plain REINFORCE's; beta > 0 subtracts beta * log(pi / pi_ref).
    rng = np.random.default_rng(0)
    reward, log_prob, ref_log_prob = (jnp.asarray(rng.normal(size=(5, 3)), jnp.float32) for _ in range(3))
    batch = jaxpg.Transition(None, None, reward, None, None, log_prob, None)
    np.testing.assert_array_equal(trainer._penalised_rewards(batch, ref_log_prob, {"beta": jnp.float32(0)}), reward)
    np.testing.assert_allclose(trainer._penalised_rewards(batch, ref_log_prob, {"beta": jnp.float32(0.5)}),
                               reward - 0.5 * (log_prob - ref_log_prob), rtol=1e-6)
    key = jax.random.key(0)
    state, metrics = trainer.train(key, {"beta": 0.0})
    penalised, penalised_metrics = trainer.train(key, {"beta": 1.0})
    assert not np.allclose(jax.tree.leaves(penalised.params)[0], jax.tree.leaves(state.params)[0])
    for m in (metrics, penalised_metrics):
        kl = np.asarray(m["kl_to_reference"])
        assert (kl >= 0).all() and np.isfinite(kl).all()
        assert kl[0] == pytest.approx(0.0, abs=1e-6)  # the first rollout is the reference's own
    assert np.asarray(metrics["kl_to_reference"])[-1] > 0


@pytest.mark.integration
def test_reinforce_policy_params_and_bad_weights_are_checked(cartpole_reinforce):
    env, params, base = cartpole_reinforce
    start = jax.tree.map(lambda x: x + 0.1, base.init(jax.random.key(1)).params["policy"])
    trainer = jaxpg.make_trainer("reinforce", env, params, policy_params=start, **SMALL_REINFORCE)
    state = trainer.init(jax.random.key(2))
    for a, b, c in zip(*map(jax.tree.leaves, (state.params["policy"], start, state.extra.reference))):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match=r"beta=-0.1 is out of range; accepted: \[0.0, inf\)"):
        jaxpg.make_trainer("reinforce", env, params, beta=-0.1, **SMALL_REINFORCE)
    with pytest.raises(ValueError, match="beta=-1 is out of range"):
        base.train(jax.random.key(0), {"beta": -1.0})
    other = jaxpg.make_trainer("reinforce", env, params, **{**SMALL_REINFORCE, "hidden_sizes": (8,)})
    wrong = jax.eval_shape(other.policy_net.init, jax.random.key(0), jnp.zeros(4))
    with pytest.raises(ValueError, match="policy_params do not fit"):
        jaxpg.make_trainer("reinforce", env, params, policy_params=wrong, **SMALL_REINFORCE)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", pytest.param("reinforce", marks=pytest.mark.slow)])
def test_kl_regularised_fine_tuning_on_a_learned_reward_beats_sft(algo):
    """The whole pipeline on TargetBandit, 2 seeds vmapped: an expert that misses each target by
    0.8 per coordinate, SFT on its noisy demonstrations, a reward model from preferences, then
    RL on the learned reward with a KL penalty to the SFT policy."""
    env = TargetBandit()
    params = env.default_params
    expert = lambda obs: obs @ TargetBandit.targets + 0.8
    model = rlhf.RewardModel((32,), action_scale=3.0)
    config = {"grpo": dict(num_groups=16, group_size=4), "reinforce": dict(num_envs=64, baseline="none")}[algo]
    base = jaxpg.make_trainer(algo, env, params, hidden_sizes=(16,), **config)

    def pipeline(key):
        kd, kb, kp, kr, kt, ke = jax.random.split(key, 6)
        demos = rlhf.collect_demonstrations(kd, env, params, expert, 512, noise_std=0.3)
        sft, _ = rlhf.behaviour_cloning(kb, base, demos, 300, 128, 1e-2)
        sampler = lambda k, obs: jax.random.uniform(k, (obs.shape[0], 2), minval=-3.0, maxval=3.0)
        pairs = rlhf.collect_preferences(kp, env, params, sampler, 2048)
        rm, _ = rlhf.train_reward_model(kr, model, pairs, 400, 128, 3e-3)
        wrapped = LearnedReward(env, rlhf.reward_function(model, rm))
        trainer = jaxpg.make_trainer(algo, wrapped, params, hidden_sizes=(16,), policy_params=sft,
                                     beta=0.01, lr=3e-3, total_timesteps=64 * 60, **config)
        state, metrics = trainer.train(kt)
        report = lambda p: rlhf.policy_rewards(trainer, p, ke, 1024, reference_params=sft)
        return report(sft), report(state), metrics

    before, after, metrics = jax.jit(jax.vmap(pipeline))(jax.random.split(jax.random.key(0), 2))
    sft_true, rl_true = before["true_reward"].mean(axis=1), after["true_reward"].mean(axis=1)
    # Measured (2 seeds, GRPO): true reward -1.41 and -1.39 (SFT) -> -0.15 and -0.16, KL to SFT 6.5;
    # the SFT policy pays the expert's bias (2 x 0.8^2) plus its own spread, RL removes most of both.
    assert (rl_true > sft_true + 0.5).all(), (sft_true, rl_true)
    assert (after["learned_reward"].mean(axis=1) > before["learned_reward"].mean(axis=1)).all()
    assert (after["kl"] > 0).all() and np.isfinite(np.asarray(metrics["kl_to_reference"])).all()


@pytest.mark.integration
def test_policy_rewards_see_the_observations_the_trainer_normalises():
    """With normalize_observations, the report evaluates the policy as the trainer does (its
    running statistics) and the reference with the statistics it started from, as the KL
    penalty does; TargetBandit's 4 contexts give each episode one of 4 expected values."""
    from jaxpg.core.normalize import RunningStats

    env = TargetBandit()
    params = env.default_params
    wrapped = LearnedReward(env, lambda obs, action: jnp.sum(action * jnp.array([1.0, 2.0])))
    trainer = jaxpg.make_trainer("grpo", wrapped, params, normalize_observations=True, hidden_sizes=(8,),
                                 num_groups=2, group_size=2)
    state = trainer.init(jax.random.key(0))
    reference = state.params["policy"]
    noise = jax.random.split(jax.random.key(1), len(jax.tree.leaves(reference)))
    policy = jax.tree.map(lambda x, k: x + 0.5 * jax.random.normal(k, x.shape),
                          reference, jax.tree.unflatten(jax.tree.structure(reference), list(noise)))
    moved = RunningStats(jnp.full(4, 0.25), jnp.full(4, 0.05), jnp.asarray(100.0))
    state = state.replace(params={**state.params, "policy": policy}, obs_stats=moved)

    contexts = jnp.eye(4)
    reward = jnp.sum(trainer.act(state, contexts, deterministic=True) * jnp.array([1.0, 2.0]), axis=-1)
    head = trainer.head
    ref_dist = head.distribution(*trainer.policy_outputs({"policy": reference}, RunningStats.create((4,)), contexts))
    kl = head.distribution(*trainer.policy_outputs(state.params, moved, contexts)).kl_divergence(ref_dist)

    @jax.jit
    def reports(state, reference):
        report = lambda p, **kw: rlhf.policy_rewards(trainer, p, jax.random.key(2), 64, reference_params=reference,
                                                     deterministic=True, **kw)
        return report(state), report(state.params["policy"], obs_stats=state.obs_stats)

    for got in reports(state, reference):
        for name, expected in (("learned_reward", reward), ("kl", kl)):
            distance = np.abs(np.asarray(got[name])[:, None] - np.asarray(expected)[None, :]).min(axis=1)
            np.testing.assert_allclose(distance, 0.0, atol=1e-4, err_msg=name)
    # Bare parameters of a normalising trainer need the statistics they were trained with.
    with pytest.raises(ValueError, match="obs_stats"):
        rlhf.policy_rewards(trainer, policy, jax.random.key(2), 8)
