"""RLHF as library functions (the textbook's Lab 8.4): demonstrations -> SFT -> reward model ->
KL-regularised RL on the learned reward.

    demos = collect_demonstrations(key, env, env_params, expert, num_envs=4096, noise_std=0.5)
    sft_params, nll = behaviour_cloning(key, trainer, demos)
    pairs = collect_preferences(key, env, env_params, sampler, num_pairs=8192)
    rm_params, losses = train_reward_model(key, RewardModel(action_scale=5.0), pairs)
    wrapped = envs.wrappers.LearnedReward(env, reward_function(model, rm_params))
    rl = jaxpg.make_trainer("grpo", wrapped, env_params, policy_params=sft_params, beta=0.05)

Every function is pure and jittable; those taking a `key` vmap over seeds.
"""

from jaxpg.algos.rlhf.data import (
    Demonstrations,
    Preferences,
    collect_demonstrations,
    collect_preferences,
    rater_labels,
)
from jaxpg.algos.rlhf.report import policy_rewards
from jaxpg.algos.rlhf.reward_model import (
    RewardModel,
    bradley_terry_loss,
    pairwise_accuracy,
    reward_function,
    train_reward_model,
)
from jaxpg.algos.sft import SFT_DISTRIBUTIONS, behaviour_cloning, check_trainer, policy_nll

__all__ = [
    "SFT_DISTRIBUTIONS", "Demonstrations", "Preferences", "RewardModel", "behaviour_cloning",
    "bradley_terry_loss", "check_trainer", "collect_demonstrations", "collect_preferences",
    "pairwise_accuracy", "policy_nll", "policy_rewards", "rater_labels", "reward_function",
    "train_reward_model",
]
