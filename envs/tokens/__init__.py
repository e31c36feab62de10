"""Verifiable token-sequence tasks: the agent writes an answer after a prompt, one token a step.

Ids: `Copy-v0` (repeat the prompt, or reverse it), `Addition-v0` (a+b, fixed-width answer),
`DropZeros-v0` (the prompt without its zeros: answers vary in length). Each module's docstring
gives its prompt distribution and answer; `env.answer(prompt)` computes an answer in Python.

Vocabulary (`VOCAB_SIZE` = 14): digits 0-9 are tokens 0-9, then `PLUS` (10), `SEP` (11, '='),
`EOS` (12), `PAD` (13). `decode`/`encode` map tokens to and from strings ('$' is EOS, '_' PAD).

Observation: int32 of shape (L + 1,), L = `env.max_len(params)` = prompt capacity + 1 +
`max_steps_in_episode` (static). `obs[:L]` is the buffer: the prompt from index 0, SEP right
after it, the completion written so far, then PAD; `obs[L]` is the write position p, the index
the next token goes to (= number of tokens in the buffer), so the last token written is at
p - 1 and a causal model predicts the next token from position p - 1. After `reset`, p is
prompt_len + 1 (just after SEP). Prompt lengths may vary within a task, so SEP moves.

Action: the next token, `Discrete(VOCAB_SIZE)`. Every token other than EOS is written into the
completion (a stray SEP or PAD is just a wrong token). The episode terminates on EOS and is
truncated when `max_steps_in_episode` tokens were written without one (never both); that limit
defaults to the longest answer plus EOS. Reward is 0 except on the last step, where the
verifier scores the completion (EOS included) against the answer followed by EOS:
`reward="exact"` gives 1 for an exact match, else 0; `reward="partial"` the fraction of
positions right, over max(answer + 1, completion length), so missing and extra tokens count as
wrong (see `score`). `info` holds gymnax's `discount` (0 on termination), `exact_match` (the
exact score on the last step whatever `reward` is, else 0), and the base class's `terminated`,
`truncated`, `final_observation`. `step_env` draws nothing: all randomness is the prompt.

Options (`envs.make(id, ...)`): `num_digits`, or `min_digits`/`max_digits` (prompt length, or
operand width for Addition, drawn uniformly per episode), `reward`, `max_steps_in_episode`,
and the task's own (`reverse` for Copy, `zero_prob` for DropZeros). `max_digits`,
`max_steps_in_episode`, `reward` and `reverse` are static (they fix shapes or branches).

Teacher forcing: `env.demonstrations(key, params, n)` gives `(obs (n, T, L + 1), actions (n, T),
mask (n, T))` of correct episodes step by step (T = max_steps_in_episode), and
`env.demonstration_sequences(key, params, n)` the same episodes as `(tokens, next_tokens, mask)`
of shape (n, L) for one causal forward over each whole sequence.
"""

from .addition import Addition
from .base import (
    EOS,
    PAD,
    PLUS,
    REWARDS,
    SEP,
    VOCAB_SIZE,
    EnvParams,
    EnvState,
    TokenEnv,
    decode,
    encode,
    score,
)
from .copy_task import Copy
from .drop_zeros import DropZeros

__all__ = [
    "Addition", "Copy", "DropZeros", "EOS", "EnvParams", "EnvState", "PAD", "PLUS", "REWARDS",
    "SEP", "TokenEnv", "VOCAB_SIZE", "decode", "encode", "score",
]
