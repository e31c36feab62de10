"""jaxpg's PPO on Craftax-Classic against Craftax's own PPO baseline (`Craftax_Baselines/ppo.py`).

Both train `Craftax-Classic-Symbolic-v1` with the baseline's defaults except the size (32
environments instead of 1,024, and 128-unit layers instead of 512, for a CPU): 64 steps per
iteration, 4 epochs of 8 minibatches, lr 2e-4 annealed linearly, gamma 0.99, GAE lambda 0.8,
clip 0.2, entropy 0.01, value 0.5, gradient norm 1.0, separate tanh actor and critic of three
layers each. The baseline's optimistic resets draw NUM_ENVS / 16 = 2 fresh worlds per step; jaxpg
runs with `resets_per_step=2` (the row `jaxpg`) and with each environment resetting itself, as
gymnax's auto-reset does (`jaxpg (own resets)`).

Each program is compiled ahead of time, then the three are called in turn on fresh keys; the
script prints compile seconds, env steps/s of the median steady call, jaxpg's speed over the
baseline's, and each run's final policy scored with sampled actions on the same episodes
(`jaxpg.episode_returns`, 32 episodes per seed).

What is not the same: the baseline assigns its fresh worlds to ending environments at random
(jaxpg: in batch order, see `AutoResetEnv.step_batch`), anneals its learning rate once per
iteration (jaxpg: once per minibatch update), and its Adam's eps is 1e-5 (jaxpg's optax default
1e-8). Its `DEBUG` logging needs W&B and is off.

The baseline is imported from a user's checkout (`--baselines PATH`, the repository's root;
default `$CRAFTAX_BASELINES` or `../Craftax_Baselines`), never copied; it imports `wandb` at the
top of `ppo.py`, so W&B must be installed.

    python -m benchmarks.craftax --baselines ~/Craftax_Baselines            # 1 seed x 131k steps
    python -m benchmarks.craftax --baselines ~/Craftax_Baselines --quick    # 1 seed x 32k steps

One seed by default: the baseline initialises with an orthogonal initialiser, a LAPACK QR, whose
batched call hung on the 2-core CPU VM with PureJaxRL's code (benchmarks/memory.py).
"""

import importlib
import os
import sys
from pathlib import Path

import jax

import envs
import jaxpg
from benchmarks import common

ENV_ID = "Craftax-Classic-Symbolic-v1"
LAYER = 128
CONFIG = {  # Craftax_Baselines' ppo.py defaults, its names; NUM_ENVS and LAYER_SIZE sized for a CPU
    "ENV_NAME": ENV_ID, "NUM_ENVS": 32, "NUM_STEPS": 64, "LR": 2e-4, "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 8,
    "GAMMA": 0.99, "GAE_LAMBDA": 0.8, "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 1.0,
    "ACTIVATION": "tanh", "ANNEAL_LR": True, "DEBUG": False, "JIT": True, "SEED": 0, "USE_WANDB": False,
    "SAVE_POLICY": False, "NUM_REPEATS": 1, "LAYER_SIZE": LAYER, "WANDB_PROJECT": None, "WANDB_ENTITY": None,
    "USE_OPTIMISTIC_RESETS": True, "OPTIMISTIC_RESET_RATIO": 16, "EXPLORATION_UPDATE_EPOCHS": 4,
    "ICM_REWARD_COEFF": 1.0, "TRAIN_ICM": False, "ICM_LR": 3e-4, "ICM_FORWARD_LOSS_COEF": 1.0,
    "ICM_INVERSE_LOSS_COEF": 1.0, "ICM_LAYER_SIZE": 256, "ICM_LATENT_SIZE": 32, "E3B_REWARD_COEFF": 1.0,
    "USE_E3B": False, "E3B_LAMBDA": 0.1,
}
FRESH_WORLDS = CONFIG["NUM_ENVS"] // CONFIG["OPTIMISTIC_RESET_RATIO"]


def jaxpg_config(total_timesteps: int) -> dict:
    """The baseline's settings in jaxpg's names."""
    return dict(num_envs=CONFIG["NUM_ENVS"], num_steps=CONFIG["NUM_STEPS"], lr=CONFIG["LR"], lr_schedule="linear",
                update_epochs=CONFIG["UPDATE_EPOCHS"], num_minibatches=CONFIG["NUM_MINIBATCHES"],
                gamma=CONFIG["GAMMA"], gae_lambda=CONFIG["GAE_LAMBDA"], clip_eps=CONFIG["CLIP_EPS"],
                ent_coef=CONFIG["ENT_COEF"], vf_coef=CONFIG["VF_COEF"], max_grad_norm=CONFIG["MAX_GRAD_NORM"],
                hidden_sizes=(LAYER,) * 3, activation="tanh", total_timesteps=total_timesteps)


def load_baseline(checkout: Path):
    """`(ppo module, ActorCritic class)` from a user's Craftax_Baselines checkout."""
    if not (checkout / "ppo.py").exists():
        raise SystemExit(f"no Craftax_Baselines checkout at {checkout} (expected ppo.py there); pass --baselines PATH")
    sys.path.insert(0, str(checkout))  # its `from models...`, `from wrappers import ...`
    return importlib.import_module("ppo"), importlib.import_module("models.actor_critic").ActorCritic


def compare(seeds: int, iterations: int, rounds: int, checkout: Path | None) -> list[dict]:
    total = iterations * CONFIG["NUM_ENVS"] * CONFIG["NUM_STEPS"]
    env, env_params = envs.make(f"craftax:{ENV_ID}")
    shared = jaxpg.make_trainer("ppo", env, env_params, resets_per_step=FRESH_WORLDS, **jaxpg_config(total))
    own = jaxpg.make_trainer("ppo", env, env_params, **jaxpg_config(total))
    contenders = {"jaxpg": jax.jit(jax.vmap(shared.train)), "jaxpg (own resets)": jax.jit(jax.vmap(own.train))}
    if checkout is not None:
        ppo, actor_critic = load_baseline(checkout)
        peer_train = ppo.make_train({**CONFIG, "TOTAL_TIMESTEPS": total})
        contenders["craftax_baselines"] = jax.jit(jax.vmap(lambda k: peer_train(jax.random.key_data(k))))
    keys = jax.random.split(jax.random.key(0), seeds)
    print(f"  {seeds} seed(s) x {total:,} env steps:", flush=True)
    timing = common.compile_then_alternate(contenders, keys, rounds)

    eval_key = jax.random.key(1)
    returns = {name: common.evaluate_params(env, env_params, trainer.act, timing["last"][name][0], eval_key, 32,
                                            sampled=True)
               for name, trainer in (("jaxpg", shared), ("jaxpg (own resets)", own))}
    if checkout is not None:
        network = actor_critic(env.action_space(env_params).n, LAYER)
        peer_params = timing["last"]["craftax_baselines"]["runner_state"][0].params
        returns["craftax_baselines"] = common.evaluate_params(
            env, env_params, lambda p, obs, key: network.apply(p, obs)[0].sample(seed=key), peer_params, eval_key, 32,
            sampled=True)
    rows = []
    for name in contenders:
        peer_s = timing["steady_s"].get("craftax_baselines")
        rows.append({"peer": name, "seeds": seeds, "env_steps_per_seed": total,
                     "compile_s": timing["compile_s"][name], "run_s": timing["steady_s"][name],
                     "times_s": timing["times_s"][name], "env_steps_per_s": seeds * total / timing["steady_s"][name],
                     "over_baseline": peer_s / timing["steady_s"][name] if peer_s else None,
                     "sampled_eval_return": returns[name].tolist()})
    return rows


def table(rows: list[dict]) -> str:
    return common.markdown_table(
        ["peer", "seeds", "env steps per seed", "compile (s)", "run (s)", "env steps/s", "speed / baseline",
         "sampled eval return (per seed)"],
        [[r["peer"], r["seeds"], f"{r['env_steps_per_seed']:,}", f"{r['compile_s']:.1f}", f"{r['run_s']:.2f}",
          common.fmt_rate(r["env_steps_per_s"]), common.fmt(r["over_baseline"], ".2f"),
          ", ".join(f"{x:.2f}" for x in r["sampled_eval_return"])] for r in rows])


def main():
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--baselines", default=os.environ.get("CRAFTAX_BASELINES", "../Craftax_Baselines"),
                        help="root of a Craftax_Baselines checkout")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=64, help="iterations of 2,048 steps per seed")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.rounds = 16, 2
    info = common.announce()
    rows = compare(args.seeds, args.iterations, args.rounds, Path(args.baselines).expanduser())
    path = common.write_results("craftax_quick" if args.quick else "craftax", {
        "machine": info, "config": CONFIG, "jaxpg_config": jaxpg_config(rows[0]["env_steps_per_seed"]),
        "jaxpg_resets_per_step": {"jaxpg": FRESH_WORLDS, "jaxpg (own resets)": None}, "rows": rows}, args.out)
    print(table(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
