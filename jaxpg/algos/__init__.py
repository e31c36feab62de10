"""The algorithms: their options (`config`), what they share (`trainer`), one module each
(`reinforce`, `ppo`, `grpo`), supervised fine-tuning (`sft`) and RLHF (`rlhf`)."""

from jaxpg.algos.grpo import GRPO
from jaxpg.algos.ppo import PPO
from jaxpg.algos.reinforce import Reinforce

ALGORITHMS = {"reinforce": Reinforce, "ppo": PPO, "grpo": GRPO}


def algorithm(name: str):
    """The trainer class of `name`; `ValueError` naming the accepted ones otherwise."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; accepted: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
