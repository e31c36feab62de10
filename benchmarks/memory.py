"""jaxpg's GRU PPO against PureJaxRL's `ppo_rnn.py`, on the same task and settings, in one process.

Both train PureJaxRL's recurrent CartPole config (gymnax's `CartPole-v1`, 4 environments x 128
steps per iteration, 4 epochs of 4 minibatches of whole environments' sequences, lr 2.5e-4
annealed linearly, a 128-unit ReLU layer, a 128-unit GRU and 128-unit ReLU heads) on the same
gymnax environment object, for the same env steps, over the same seeds (vmapped). Each program is
compiled ahead of time, then the two are called alternately on fresh keys; the script prints env
steps/s of the median steady call, the compile times, and each seed's greedy evaluation return
for jaxpg (PureJaxRL's `train` returns no policy to evaluate apart from its own metrics, so its
last training return is printed).

PureJaxRL's actor and critic share one torso and one GRU (one network, one carry): jaxpg's
`shared_core=True` is the same network, the row `jaxpg`. The row `jaxpg (separate)` is jaxpg's
default, a policy and a value network each with its own torso and GRU (two cells per step).

PureJaxRL is read from a user's checkout (`--purejaxrl PATH`, its repository root; default
`$PUREJAXRL` or `../purejaxrl`), never copied. `ppo_rnn.py` is written for flax's old cell API
and gymnax's old five-value `step`, so this script makes exactly these changes, in memory, and
prints them:
  1. `nn.GRUCell()` becomes `nn.GRUCell(features=128)` (flax now requires the width);
  2. `nn.GRUCell.initialize_carry(rng, (batch,), hidden)`, a static call in old flax, becomes
     zeros of shape `(batch, hidden)` (what the old call returned);
  3. `gymnax.make` in its namespace returns the environment behind a shim whose `step` returns
     gymnax 0.x's `(obs, state, reward, done, info)` with `done = terminated | truncated`, the
     five values its wrappers unpack (gymnax 1.0's `step` returns six).
Its `DEBUG` printing is turned off.

    python -m benchmarks.memory --purejaxrl ~/purejaxrl             # 1 seed x 131k steps
    python -m benchmarks.memory --purejaxrl ~/purejaxrl --quick     # 1 seed x 32k steps

More seeds (`--seeds 1 8`) vmap PureJaxRL's initialisation, whose orthogonal initialiser is a
LAPACK QR: on the 2-core CPU VM its batched call hung (no progress in 2 minutes, every thread
waiting under `jax::ParallelBatchMap`, 2026-12-05), so the default is one seed. jaxpg draws its
orthogonal matrices with plain array ops and runs 8 seeds there.
"""

import argparse
import os
import sys
import types
from pathlib import Path

import gymnax
import jax
import numpy as np

import jaxpg
from benchmarks import common

CONFIG = {
    "LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 4, "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
    "ENV_NAME": "CartPole-v1", "ANNEAL_LR": True, "DEBUG": False,
}
HIDDEN = 128

# Exactly the source changes described in the module docstring: (old text, new text).
CHANGES = (
    ("nn.GRUCell()(rnn_state, ins)", f"nn.GRUCell(features={HIDDEN})(rnn_state, ins)"),
    ("""return nn.GRUCell.initialize_carry(
            jax.random.PRNGKey(0), (batch_size,), hidden_size
        )""", "return jnp.zeros((batch_size, hidden_size))"),
)


def jaxpg_config(total_timesteps: int) -> dict:
    """PureJaxRL's recurrent config in jaxpg's names."""
    return dict(policy="gru", rnn_hidden_size=HIDDEN, hidden_sizes=(HIDDEN,), rnn_head_sizes=(HIDDEN,),
                activation="relu", num_envs=CONFIG["NUM_ENVS"], num_steps=CONFIG["NUM_STEPS"],
                update_epochs=CONFIG["UPDATE_EPOCHS"], num_minibatches=CONFIG["NUM_MINIBATCHES"], lr=CONFIG["LR"],
                lr_schedule="linear", gamma=CONFIG["GAMMA"], gae_lambda=CONFIG["GAE_LAMBDA"],
                clip_eps=CONFIG["CLIP_EPS"], ent_coef=CONFIG["ENT_COEF"], vf_coef=CONFIG["VF_COEF"],
                max_grad_norm=CONFIG["MAX_GRAD_NORM"], total_timesteps=total_timesteps)


class FiveValueStep:
    """A gymnax 1.0 environment seen through gymnax 0.x's `step` (change 3)."""

    def __init__(self, env):
        self._env = env

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, terminated | truncated, info

    def __getattr__(self, name):
        return getattr(self._env, name)


def load_ppo_rnn(checkout: Path, env, env_params):
    """PureJaxRL's `ppo_rnn` module from a user's checkout, with `CHANGES` applied in memory."""
    source_dir = checkout / "purejaxrl"
    path = source_dir / "ppo_rnn.py"
    if not path.exists():
        raise SystemExit(f"no PureJaxRL checkout at {checkout} (expected {path}); pass --purejaxrl PATH")
    source = path.read_text()
    for old, new in CHANGES:
        if source.count(old) != 1:
            raise SystemExit(f"{path} has changed: expected one {old!r}")
        source = source.replace(old, new)
    sys.path.insert(0, str(source_dir))  # its `from wrappers import ...`
    module = types.ModuleType("purejaxrl_ppo_rnn")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    module.gymnax = types.SimpleNamespace(make=lambda name: (FiveValueStep(env), env_params))
    return module


def compare(seeds_list, iterations: int, rounds: int, checkout: Path | None) -> list[dict]:
    """jaxpg's GRU PPO (and PureJaxRL's `ppo_rnn`, where `checkout` is given) at each seed count:
    one row per contender with compile, steady run, env steps/s, the speed ratio and returns."""
    total = iterations * CONFIG["NUM_ENVS"] * CONFIG["NUM_STEPS"]
    env, env_params = gymnax.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, **jaxpg_config(total), shared_core=True)
    separate = jaxpg.make_trainer("ppo", env, env_params, **jaxpg_config(total))
    contenders = {"jaxpg": jax.jit(jax.vmap(trainer.train)), "jaxpg (separate)": jax.jit(jax.vmap(separate.train))}
    if checkout is not None:
        peer_train = load_ppo_rnn(checkout, env, env_params).make_train({**CONFIG, "TOTAL_TIMESTEPS": total})
        contenders["purejaxrl"] = jax.jit(jax.vmap(lambda k: peer_train(jax.random.key_data(k))))
    rows = []
    for seeds in seeds_list:
        keys = jax.random.split(jax.random.key(0), seeds)
        print(f"  {seeds} seed(s) x {total:,} env steps:", flush=True)
        timing = common.compile_then_alternate(contenders, keys, rounds)
        returns = common.evaluate_seeds(trainer, timing["last"]["jaxpg"][0], jax.random.key(1), 32)
        separate_returns = common.evaluate_seeds(separate, timing["last"]["jaxpg (separate)"][0], jax.random.key(1), 32)
        peer_last = None
        if "purejaxrl" in contenders:
            peer_metrics = timing["last"]["purejaxrl"]["metric"]
            done = np.asarray(peer_metrics["returned_episode"])
            peer_returns = np.asarray(peer_metrics["returned_episode_returns"])
            # The mean return of the episodes that finished in PureJaxRL's last iteration, per seed.
            peer_last = [float(peer_returns[i, -1][done[i, -1]].mean()) if done[i, -1].any() else float("nan")
                         for i in range(seeds)]
        for name in contenders:
            steps_per_s = seeds * total / timing["steady_s"][name]
            ratio = timing["steady_s"]["purejaxrl"] / timing["steady_s"][name] if peer_last else None
            rows.append({"peer": name, "seeds": seeds, "env_steps_per_seed": total,
                         "compile_s": timing["compile_s"][name], "run_s": timing["steady_s"][name],
                         "times_s": timing["times_s"][name], "env_steps_per_s": steps_per_s,
                         "jaxpg_over_purejaxrl": ratio,
                         "eval_return": {"jaxpg": returns.tolist(),
                                         "jaxpg (separate)": separate_returns.tolist()}.get(name),
                         "last_training_return": peer_last if name == "purejaxrl" else None})
            print(f"    {name}: compile {timing['compile_s'][name]:.1f} s, run {timing['steady_s'][name]:.2f} s, "
                  f"{steps_per_s / 1e3:,.1f} k env steps/s", flush=True)
        print(f"    jaxpg greedy eval {np.round(returns, 1).tolist()}, "
              f"separate {np.round(separate_returns, 1).tolist()}"
              + (f"; PureJaxRL last training return {np.round(peer_last, 1).tolist()}; jaxpg / PureJaxRL speed "
                 f"{rows[-3]['jaxpg_over_purejaxrl']:.2f}x (separate {rows[-2]['jaxpg_over_purejaxrl']:.2f}x)"
                 if peer_last else ""), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    ratio = lambda r: (f"{r['jaxpg_over_purejaxrl']:.2f}x" if r["peer"] != "purejaxrl" and r["jaxpg_over_purejaxrl"]
                       else "")
    returns = lambda r: np.mean(r["eval_return"] if r["peer"] != "purejaxrl" else r["last_training_return"])
    return common.markdown_table(
        ["peer", "seeds", "env steps per seed", "compile (s)", "run (s)", "env steps/s", "jaxpg / PureJaxRL",
         "return (jaxpg: greedy eval; PureJaxRL: last training)"],
        [[r["peer"], r["seeds"], f"{r['env_steps_per_seed']:,}", f"{r['compile_s']:.1f}", f"{r['run_s']:.2f}",
          f"{r['env_steps_per_s'] / 1e3:,.1f} k", ratio(r), f"{returns(r):.1f}"] for r in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purejaxrl", default=os.environ.get("PUREJAXRL", "../purejaxrl"),
                        help="root of a PureJaxRL checkout")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1])
    parser.add_argument("--iterations", type=int, default=256, help="iterations of 512 steps per seed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.iterations, args.rounds = [1], 64, 2
    info = common.announce()
    print("PureJaxRL ppo_rnn.py changed in memory:", *[f"  {old!r} -> {new!r}" for old, new in CHANGES],
          "  gymnax.make -> the same env with a five-value step", sep="\n")
    rows = []
    for seeds in args.seeds:  # the file is rewritten after each seed count, so a stopped run keeps its rows
        rows += compare([seeds], args.iterations, args.rounds, Path(args.purejaxrl).expanduser())
        path = common.write_results("memory_quick" if args.quick else "memory", {
            "machine": info, "config": CONFIG,
            "jaxpg_config": {**jaxpg_config(args.iterations * CONFIG["NUM_ENVS"] * CONFIG["NUM_STEPS"]),
                             "shared_core": "True (jaxpg), False (jaxpg (separate))"},
            "changes_to_purejaxrl": [list(c) for c in CHANGES] + [["gymnax.make", "five-value step shim"]],
            "rows": rows}, args.out)
    print(table(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
