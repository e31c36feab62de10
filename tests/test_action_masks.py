"""Action masks: an observation's `action_mask` restricts a categorical policy to legal actions.

`MaskedChoice` tempts a policy that ignores its mask: action 0 is never legal and pays 100, so
one illegal action in a rollout shows in its mean return. Of the others, two of {1, 2, 3} are
legal at random, paying 0, 0.5 and 1: the best legal policy takes the highest legal action.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import jaxpg
from jaxpg.core import observations

REWARDS = jnp.array([100.0, 0.0, 0.5, 1.0])
PAIRS = jnp.array([[False, True, True, False], [False, True, False, True], [False, False, True, True]])


@struct.dataclass
class State(environment.EnvState):
    mask: jax.Array


class MaskedChoice(environment.Environment):
    """One-step episodes; the observation is `{"action_mask": mask, "legal": mask as floats}`."""

    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=1)

    def reset_env(self, key, params):
        mask = PAIRS[jax.random.randint(key, (), 0, len(PAIRS))]
        return self.get_obs(State(time=0, mask=mask)), State(time=0, mask=mask)

    def get_obs(self, state, params=None, key=None):
        return {"action_mask": state.mask, "legal": state.mask.astype(jnp.float32)}

    def step_env(self, key, state, action, params):
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, REWARDS[action], jnp.asarray(True), {}

    def action_space(self, params=None):
        return spaces.Discrete(4)

    def observation_space(self, params):
        return spaces.Dict({"action_mask": spaces.Box(0, 1, (4,), jnp.bool_), "legal": spaces.Box(0, 1, (4,))})


ENV = MaskedChoice()


def masked_batch(n, seed=0):
    masks = PAIRS[jax.random.randint(jax.random.key(seed), (n,), 0, len(PAIRS))]
    return {"action_mask": masks, "legal": masks.astype(jnp.float32)}


def tempted_state(trainer):
    """A fresh state whose unmasked policy prefers the illegal action 0 by a logit of 20."""
    state = trainer.init(jax.random.key(0))
    head = state.params["policy"]["params"]["Dense_0"]
    head = {**head, "bias": head["bias"].at[0].set(20.0)}
    policy = {"params": {**state.params["policy"]["params"], "Dense_0": head}}
    return state.replace(params={**state.params, "policy": policy})


def test_a_masked_action_is_never_sampled_and_entropy_is_over_legal_actions():
    """The mask is applied in `Trainer.policy_outputs`, which every algorithm's rollout, loss and
    evaluation call; the integration test below trains all three through it."""
    trainer = jaxpg.make_trainer("ppo", ENV, ENV.default_params, hidden_sizes=(8,))
    state = tempted_state(trainer)
    obs = masked_batch(20_000)
    actions = np.asarray(jax.jit(lambda s, o, k: trainer.act(s, o, k))(state, obs, jax.random.key(1)))
    assert np.asarray(obs["action_mask"])[np.arange(len(actions)), actions].all()
    greedy = np.asarray(trainer.act(state, obs, deterministic=True))
    assert np.asarray(obs["action_mask"])[np.arange(len(greedy)), greedy].all()

    # The entropy, log-probs and KL terms read the same masked logits.
    logits, log_std = trainer.policy_outputs(state.params, state.obs_stats, obs)
    raw, _ = trainer.policy_net.apply(state.params["policy"], obs)
    for row in range(5):
        legal = np.asarray(obs["action_mask"][row])
        p = np.asarray(jax.nn.softmax(raw[row][legal]))
        np.testing.assert_allclose(trainer.head.entropy(logits[row], log_std), -(p * np.log(p)).sum(), rtol=1e-5)
        log_probs = trainer.head.log_prob(logits[row], log_std, jnp.arange(4))
        np.testing.assert_allclose(np.exp(log_probs)[legal], p, rtol=1e-5)
        assert np.all(np.exp(log_probs)[~legal] == 0)


def test_no_legal_action_leaves_the_policy_uniform_and_finite():
    logits = observations.mask_logits(jnp.array([3.0, -1.0, 0.5]), jnp.zeros(3, bool))
    np.testing.assert_array_equal(logits, [3.0, -1.0, 0.5])


def test_a_mask_that_does_not_fit_the_actions_is_refused():
    class WrongMask(MaskedChoice):
        def get_obs(self, state, params=None, key=None):
            return {"action_mask": jnp.ones(3, bool), "legal": state.mask.astype(jnp.float32)}

    with pytest.raises(ValueError, match=r"action_mask has shape \(3,\); accepted: .*\(4,\)"):
        jaxpg.make_trainer("ppo", WrongMask(), ENV.default_params)


@pytest.mark.integration
@pytest.mark.parametrize("algo, options", [
    ("ppo", {"num_envs": 32, "num_steps": 4, "num_minibatches": 2, "update_epochs": 4}),
    ("reinforce", {"num_envs": 64, "baseline": "value"}),
    ("grpo", {"num_groups": 16, "group_size": 4, "beta": 0.05}),
])
def test_every_algorithm_learns_the_best_legal_action_without_taking_an_illegal_one(algo, options):
    trainer = jaxpg.make_trainer(algo, ENV, ENV.default_params, hidden_sizes=(16,), lr=3e-2, ent_coef=0.0,
                                 total_timesteps=64 * 60, **options)
    state, metrics = trainer.train(jax.random.key(0))
    # One illegal action among 64 episodes would lift an iteration's mean return above 1.5.
    returns = np.asarray(metrics["episode_return"])
    assert np.nanmax(returns) <= 1.0, returns
    if "kl_to_reference" in metrics:
        assert np.isfinite(np.asarray(metrics["kl_to_reference"])).all()
    evaluated = np.asarray(jaxpg.evaluate(trainer, state, jax.random.key(1), 300))
    # The highest legal action every time: 1 where action 3 is legal (2 masks of 3), else 0.5,
    # a mean of 0.83; taking 2 where 3 is legal too would bring it to 0.67, and 1 scores 0.
    assert set(np.unique(evaluated)) <= {0.5, 1.0}
    assert evaluated.mean() > 0.78, evaluated.mean()
