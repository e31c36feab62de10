"""Supervised fine-tuning: a trainer's policy fitted to demonstrations, to start RL from.

Two kinds of demonstrations, one loss (the negative log-likelihood of the demonstrated actions,
minimised on `jaxpg.algos.minibatch`'s loop):
- a token task's correct completions, by teacher forcing (`fit_demonstrations`):

      trainer = jaxpg.make_trainer("grpo", env, env_params, policy="transformer")
      sft_params, nll = fit_demonstrations(key, trainer)
      rl = jaxpg.make_trainer("grpo", env, env_params, policy="transformer", policy_params=sft_params, beta=0.04)

- recorded `(obs, action)` pairs of an expert on a continuous task (`behaviour_cloning`, with
  `jaxpg.rlhf.collect_demonstrations`), so the learned std matches the demonstrations' spread.

The policy is the trainer's own network and action head, so the parameters returned are what
`make_trainer(..., policy_params=...)` accepts: RL starts from them, and GRPO and REINFORCE (with
`beta > 0`) keep them as the frozen KL reference.
"""

import jax
import jax.numpy as jnp
import optax

from jaxpg.algos.minibatch import fit_minibatches
from jaxpg.core.evaluate import episode_returns


def _check(trainer):
    if trainer.head.kind != "categorical" or not hasattr(trainer.env, "demonstrations"):
        raise ValueError(
            "jaxpg.sft fits a categorical policy to a token env's demonstrations; accepted: a trainer on an "
            "envs.tokens task (Copy-v0, Addition-v0, DropZeros-v0)"
        )
    if trainer.config.normalize_observations:
        raise ValueError("jaxpg.sft: the SFT policy sees raw observations; accepted: normalize_observations=False")


def demonstration_data(key, trainer, num_demonstrations: int, env_params=None):
    """The teacher-forcing data for `trainer`'s policy network.

    Whole sequences `(tokens, next_tokens, mask)`, each `(n, L)`, when the network has
    `sequence_logits` (one causal forward per sequence, as `jaxpg.core.transformer`'s); otherwise the
    episodes step by step, `(obs (n * T, L + 1), actions (n * T,), mask (n * T,))`.
    """
    env_params = trainer.env_params if env_params is None else env_params
    if hasattr(trainer.policy_net, "sequence_logits"):
        return trainer.env.demonstration_sequences(key, env_params, num_demonstrations)
    obs, actions, mask = trainer.env.demonstrations(key, env_params, num_demonstrations)
    return obs.reshape((-1,) + obs.shape[2:]), actions.reshape(-1), mask.reshape(-1)


def token_nll(policy_params, trainer, data):
    """Mean negative log-likelihood (nats per completion token) of the demonstrated next tokens.

    `data` is `demonstration_data`'s; entries outside its mask (prompt positions, padding)
    do not count.
    """
    inputs, targets, mask = data
    mask = mask.astype(jnp.float32)
    net = trainer.policy_net
    if hasattr(net, "sequence_logits"):
        logits = net.apply(policy_params, inputs, method=net.sequence_logits)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    else:
        outputs, log_std = net.apply(policy_params, inputs)
        nll = -trainer.head.log_prob(outputs, log_std, targets)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def fit_demonstrations(key, trainer, num_demonstrations: int = 4096, num_updates: int = 500,
                       batch_size: int = 128, lr=1e-3, env_params=None):
    """Teacher-forces `trainer`'s policy network on correct completions with Adam.

    Args:
      key: PRNG key (initialisation, the demonstrations' prompts, minibatches); vmap over it.
      trainer: a jaxpg trainer on an `envs.tokens` task with a categorical head (e.g.
        `policy="transformer"`, or any `policy_network`).
      num_demonstrations: static; distinct episodes drawn once, minibatches with replacement.
      num_updates, batch_size: static positive integers.
      lr: Adam's learning rate; may be traced.
      env_params: defaults to the trainer's.

    Returns:
      `(policy_params, nll)`: parameters for `make_trainer(..., policy_params=...)` and the
      `(num_updates,)` minibatch NLLs.
    """
    _check(trainer)
    init_key, data_key, batch_key = jax.random.split(key, 3)
    data = demonstration_data(data_key, trainer, num_demonstrations, env_params)
    obs, _ = trainer.reset_envs(init_key, 1, env_params)
    params = trainer.policy_net.init(init_key, obs)
    loss = lambda p, batch: token_nll(p, trainer, batch)
    return fit_minibatches(batch_key, params, loss, data, num_updates, batch_size, lr)


def exact_match(trainer, policy_params, key, num_episodes: int = 1024, deterministic: bool = False,
                env_params=None):
    """Exact-match accuracy of a policy on fresh prompts: a scalar in [0, 1].

    Scored with `reward="exact"` whatever the env's reward is. The same `key` gives every
    policy the same prompts (common random numbers), so accuracies compare pairwise. Samples
    from the policy unless `deterministic` (greedy decoding).
    """
    env_params = trainer.env_params if env_params is None else env_params
    env_params = env_params.replace(reward="exact")
    net, head = trainer.policy_net, trainer.head

    def policy(obs, act_key):
        outputs, log_std = net.apply(policy_params, obs)
        raw = head.mode(outputs, log_std) if deterministic else head.sample(outputs, log_std, act_key)[0]
        return head.to_env(raw)

    return episode_returns(trainer.env, env_params, policy, key, num_episodes).mean()

# Raw action == env action only for these heads (to_env merely clips); a squashed or Beta head
# would need the inverse of its squashing, which is infinite on the action bounds that
# demonstrations often sit on.
SFT_DISTRIBUTIONS = ("gaussian", "fixed_std_gaussian")


def check_trainer(trainer) -> None:
    """Raises `ValueError` naming the setting when `trainer`'s policy cannot be cloned."""
    if trainer.head.kind not in SFT_DISTRIBUTIONS:
        raise ValueError(
            f"distribution={trainer.head.kind!r} cannot be behaviour-cloned from env actions; "
            f"accepted: {', '.join(SFT_DISTRIBUTIONS)}"
        )
    if trainer.config.normalize_observations:
        raise ValueError(
            "normalize_observations=True: the SFT policy sees raw observations, so the trainer "
            "must too; accepted: False"
        )


def policy_nll(policy_params, trainer, demos):
    """Mean negative log-likelihood of `demos.action` under the policy: a scalar (nats)."""
    outputs, log_std = trainer.policy_net.apply(policy_params, demos.obs)
    return -jnp.mean(trainer.head.log_prob(outputs, log_std, demos.action))


def behaviour_cloning(key, trainer, demos, num_updates: int = 2000,
                      batch_size: int = 256, lr=1e-3):
    """Fits `trainer`'s policy to `demos` by negative log-likelihood with Adam.

    Args:
      key: PRNG key (initialisation as the trainer does it, and minibatches); vmap over it.
      trainer: any jaxpg trainer on the environment the demonstrations come from, with a
        Gaussian head (`SFT_DISTRIBUTIONS`) and `normalize_observations=False`.
      demos: `Demonstrations` (leading axis M).
      num_updates, batch_size: static positive integers; minibatches are drawn with replacement.
      lr: Adam's learning rate; may be traced.

    Returns:
      `(policy_params, nll)`: the policy parameters (the `params["policy"]` of a `TrainState`)
      and the `(num_updates,)` minibatch NLLs.
    """
    check_trainer(trainer)
    init_key, batch_key = jax.random.split(key)
    params = trainer.policy_net.init(init_key, demos.obs[:1])
    loss = lambda p, batch: policy_nll(p, trainer, batch)
    return fit_minibatches(batch_key, params, loss, demos, num_updates, batch_size, lr)
