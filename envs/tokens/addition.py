"""Addition-v0: write the sum of two n-digit numbers.

Prompt: "a+b", each operand exactly n digits (leading zeros kept, every digit uniform in 0-9),
n uniform in [min_digits, max_digits] and shared by both operands. Answer: a + b written with
exactly n + 1 digits, most significant first, zero-padded: "12+95" -> "107", "05+03" -> "008".
The fixed width makes every answer digit a function of the prompt's aligned digits and carries,
with no length to guess. Digits are added column by column, so any n up to 32 is exact.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .base import PAD, PLUS, TokenEnv, build_params, random_words, uniform_int
from .base import EnvParams as BaseParams


@struct.dataclass
class EnvParams(BaseParams):
    # 2 by default: the width whose GRPO preset (SFT first) learns in minutes on a CPU.
    min_digits: int = 2
    max_digits: int = struct.field(pytree_node=False, default=2)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=5)


def answer(prompt: str) -> str:
    """The answer to an Addition prompt "a+b" (operands of equal width n): n + 1 digits."""
    a, plus, b = prompt.partition("+")
    if not (plus and a.isdigit() and b.isdigit() and len(a) == len(b)):
        raise ValueError(f"Addition-v0: a prompt is 'a+b' with equal-width digit strings; got {prompt!r}")
    return str(int(a) + int(b)).zfill(len(a) + 1)


def add_columns(a_place, b_place):
    """Column addition: place-value digits `(D,)` of a and b, units first -> `(D + 1,)` of a + b.

    Without a sequential loop over columns (which compiles slowly inside the env's vmapped,
    scanned step): column k receives a carry iff the nearest column j < k whose digit sum is
    not 9 sums to 10 or more; the 9s in between pass it on.
    """
    s = a_place + b_place
    k = jnp.arange(s.shape[0])
    decider = jax.lax.cummax(jnp.where(s != 9, k, -1))
    carry_out = (decider >= 0) & (s[jnp.maximum(decider, 0)] >= 10)
    carry_in = jnp.concatenate([jnp.zeros(1, bool), carry_out[:-1]])
    return jnp.concatenate([(s + carry_in) % 10, carry_out[-1:]]).astype(jnp.int32)


class Addition(TokenEnv):
    """Addition-v0; see the module docstring."""

    task_name = "Addition-v0"
    params_class = EnvParams

    def prompt_capacity(self, params) -> int:
        return 2 * params.max_digits + 1

    def answer_capacity(self, params) -> int:
        return params.max_digits + 1

    def sample(self, key, params):
        D = params.max_digits
        words = random_words(key, 2 * D + 1)
        n = uniform_int(words[0], params.min_digits, D)
        # Place values, units first: a = sum_k a_place[k] 10^k, zero beyond n digits.
        k = jnp.arange(D)
        a_place = jnp.where(k < n, uniform_int(words[1 : D + 1], 0, 9), 0)
        b_place = jnp.where(k < n, uniform_int(words[D + 1 :], 0, 9), 0)

        sum_place = add_columns(a_place, b_place)

        j = jnp.arange(self.prompt_capacity(params))
        a_digit = a_place[jnp.clip(n - 1 - j, 0, D - 1)]
        b_digit = b_place[jnp.clip(2 * n - j, 0, D - 1)]
        prompt = jnp.where(j < n, a_digit, jnp.where(j == n, PLUS, jnp.where(j <= 2 * n, b_digit, PAD)))
        i = jnp.arange(params.max_steps_in_episode)
        answer = jnp.where(i <= n, sum_place[jnp.clip(n - i, 0, D)], PAD)
        return prompt, 2 * n + 1, answer, n + 1

    def reference_answer(self, prompt: str, params) -> str:
        return answer(prompt)


def make(**overrides: Any):
    """`envs.make("Addition-v0", **overrides)`.

    Options: `num_digits` (operand width, 1-32; default 2), or `min_digits`/`max_digits` (a
    range); `reward`: "exact" (default) or "partial"; `max_steps_in_episode`: the completion
    limit, at least max_digits + 2 (the default).

    Returns:
      `(env, env_params)`. Raises `ValueError` naming a bad option and what it accepts.
    """
    env = Addition()
    return env, build_params(env, overrides, {})
