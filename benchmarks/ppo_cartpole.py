"""PPO on CartPole-v1: jaxpg against rejax (JAX) and stable-baselines3 (PyTorch CPU).

Every peer trains PureJaxRL's CartPole config: 4 envs x 128 steps per iteration, 976 iterations
(499,712 env steps; quick: 128 iterations, 65,536 steps), 4 epochs of 4 minibatches, Adam with
lr 2.5e-4 annealed linearly to 0, gamma 0.99, GAE lambda 0.95, clip 0.2, entropy 0.01, value 0.5,
max grad norm 0.5, separate 64x64 tanh policy and value networks. Per peer and seed count:

- compile: `jax.jit(train).lower(keys).compile()` wall time (no run spent on it); steady: the
  median of the timed calls, each on a fresh key, jaxpg and rejax alternated A B A B in the
  same process (1 seed: 5 rounds, quick 3; 8 seeds: 2, quick 1). jaxpg/rejax is the median of
  the rounds' pairwise time ratios (above 1: jaxpg faster).
- learning: the mean over seeds of the training return (mean of the episodes that finished in
  an iteration's rollout), the first iteration where it reaches 475, converted to seconds with
  the steady seconds per iteration; and the greedy evaluation return of every final policy
  (100 episodes, quick 32; mean and std over seeds).
- seed scaling (full mode): jaxpg and rejax at 64 and 512 vmapped seeds on shortened runs
  (about 2M env steps per call; steps/s only, alternated as above).
- stable-baselines3 (quick: 1 seed, stopped at the first rollout that reaches 475 or after
  128 iterations; full: 5 seeds of the whole run, one after another): wall seconds from
  `learn()` to the first rollout whose finished episodes average 475, and the evaluation
  return. jaxpg vs SB3 compares the median seconds per seed to 475, jaxpg's from its largest
  run's per-seed curves priced at its 1-seed steady seconds per iteration.
- profile: one jaxpg iteration split into rollout (env + policy forward), advantages
  (V(obs) and V(final obs) in one batched forward + GAE + episode stats), permutation (shuffle +
  gather into minibatches) and
  update (forward/backward + Adam over 16 minibatches), each jitted on its own and repeated
  in a `fori_loop`, alternated, against the network FLOPs each piece needs (full mode adds the
  whole `trainer.step` as a sum check). The pieces are the trainer's own functions recomposed;
  benchmarks/README.md says why this one copy of an iteration exists.

How the peers differ where their APIs allow no choice (see benchmarks/README.md): rejax
clips gradients elementwise (`optax.clip`), keeps separate Adam states for actor and critic
(eps 1e-8) and initialises with lecun-normal; rejax 0.1.3 expects gymnax's old 5-value `step`,
so it steps our CartPole through `gymnax.wrappers.compat.LegacyStepAPIWrapper` (made
deep-copyable below). SB3 uses its DummyVecEnv over 4 Gymnasium CartPole-v1 envs, its value
loss has no 1/2 factor (so `vf_coef=0.25` gives the same weight), no value clipping, and torch
runs on 1 thread (on a shared 2-core machine its default of 2 threads was 20-50x slower).

    python -m benchmarks.ppo_cartpole --quick            # ~3-4 min on a shared 2-core CPU
    python -m benchmarks.ppo_cartpole                    # full, ~25 min; SB3's 5 runs dominate
    python -m benchmarks.ppo_cartpole --sb3-seeds 0 --scaling-seeds   # JAX peers only
"""

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
import jaxpg
from benchmarks import common
from jaxpg.algos.trainer import episode_statistics
from jaxpg.core.advantages import gae

NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCHES = 4, 128, 4, 4
HIDDEN = (64, 64)
HP = dict(lr=2.5e-4, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
          max_grad_norm=0.5)
BATCH = NUM_ENVS * NUM_STEPS
FULL_ITERS, QUICK_ITERS = 976, 128  # 500,000 // 512 = 976, as jaxpg computes it
TARGET = 475.0


def jaxpg_config(iterations: int) -> dict:
    return dict(num_envs=NUM_ENVS, num_steps=NUM_STEPS, total_timesteps=iterations * BATCH,
                update_epochs=EPOCHS, num_minibatches=MINIBATCHES, lr_schedule="linear",
                hidden_sizes=HIDDEN, activation="tanh", **HP)


def jaxpg_learning(metrics, num_seeds: int):
    """`(seeds, iterations)` training returns and the mean-over-seeds curve."""
    returns = np.asarray(metrics["episode_return"]).reshape(num_seeds, -1)
    return returns, returns.mean(axis=0)


# rejax ---------------------------------------------------------------------------------------

def make_rejax(iterations: int, env, env_params):
    """rejax PPO with the shared config on our CartPole, via gymnax's legacy-step wrapper."""
    import optax
    from gymnax.wrappers.compat import LegacyStepAPIWrapper
    from rejax import PPO

    class LegacyStep(LegacyStepAPIWrapper):
        """gymnax's 6-to-5-value `step` adapter, made deep-copyable.

        rejax deep-copies its config (env included) in `create` and in `init_state`; the
        wrapper's `__getattr__` recurses forever on a copy whose `_env` is not set yet. The
        wrapped env is immutable, so sharing it is a correct copy.
        """

        def __deepcopy__(self, memo):
            return self

    algo = PPO.create(
        env=env, env_params=env_params, num_envs=NUM_ENVS, num_steps=NUM_STEPS,
        num_epochs=EPOCHS, num_minibatches=MINIBATCHES,
        learning_rate=optax.linear_schedule(HP["lr"], 0.0, iterations * EPOCHS * MINIBATCHES),
        gamma=HP["gamma"], gae_lambda=HP["gae_lambda"], clip_eps=HP["clip_eps"],
        ent_coef=HP["ent_coef"], vf_coef=HP["vf_coef"], max_grad_norm=HP["max_grad_norm"],
        total_timesteps=iterations * BATCH, eval_freq=iterations * BATCH,
        skip_initial_evaluation=True,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": HIDDEN},
    )
    # `create` only reads spaces from the env, so it gets the raw env (deep-copying the wrapper
    # is what breaks); training steps the wrapped one. rejax's built-in evaluation would step
    # the unwrapped 6-value env, so it is replaced by a no-op and every peer is evaluated by
    # the same greedy loop (`jaxpg.episode_returns`), outside the timed run.
    return algo.replace(env=LegacyStep(env), eval_callback=lambda algo, ts, rng: jnp.zeros(()))


def rejax_returns(algo, env, env_params, params, key, num_episodes: int):
    """`(S,)` mean greedy return of rejax actor `params` (leading seed axis S), on the same episode
    loop and keys as `common.evaluate_seeds` gives jaxpg's policies."""
    def greedy(p, obs):
        return jnp.argmax(algo.actor.apply(p, obs, method=lambda m, x: m._action_dist(x).logits), axis=-1)

    return common.evaluate_params(env, env_params, greedy, params, key, num_episodes)


# stable-baselines3 ---------------------------------------------------------------------------

def run_sb3(seed: int, iterations: int, eval_episodes: int, stop_at_target: bool) -> dict:
    """One SB3 PPO run: wall time, learning curve per rollout, greedy evaluation returns.

    `stop_at_target` ends training at the first rollout whose finished episodes average 475
    (quick mode: the time to 475 without the rest of the run; the evaluation is then of that
    policy, not of a finished run).
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)

    class Curve(BaseCallback):
        """Per rollout: env steps, seconds since `learn()` began, mean finished return."""

        def __init__(self):
            super().__init__()
            self.rows, self.finished, self.last = [], [], float("nan")

        def _on_training_start(self):
            self.start = time.perf_counter()

        def _on_step(self):
            self.finished += [i["episode"]["r"] for i in self.locals["infos"] if "episode" in i]
            return not (stop_at_target and self.last >= TARGET)

        def _on_rollout_end(self):
            if self.finished:
                self.last = float(np.mean(self.finished))
                self.finished = []
            self.rows.append((self.num_timesteps, time.perf_counter() - self.start, self.last))

    lr = HP["lr"]
    env = make_vec_env("CartPole-v1", n_envs=NUM_ENVS, seed=seed)
    model = PPO(
        "MlpPolicy", env, n_steps=NUM_STEPS, batch_size=BATCH // MINIBATCHES, n_epochs=EPOCHS,
        learning_rate=lambda remaining: lr * remaining, gamma=HP["gamma"],
        gae_lambda=HP["gae_lambda"], clip_range=HP["clip_eps"], ent_coef=HP["ent_coef"],
        vf_coef=HP["vf_coef"] / 2, max_grad_norm=HP["max_grad_norm"],
        policy_kwargs=dict(net_arch=dict(pi=list(HIDDEN), vf=list(HIDDEN)),
                           activation_fn=torch.nn.Tanh),
        device="cpu", seed=seed, verbose=0,
    )
    curve = Curve()
    start = time.perf_counter()
    model.learn(total_timesteps=iterations * BATCH, callback=curve)
    train_s = time.perf_counter() - start
    eval_env = make_vec_env("CartPole-v1", n_envs=8, seed=10_000 + seed)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes,
                                 deterministic=True, return_episode_rewards=True)
    steps, seconds, curve_returns = (np.array(c) for c in zip(*curve.rows))
    hit = common.first_crossing(curve_returns, TARGET)
    return {
        "seed": seed,
        "train_s": train_s,
        "env_steps": int(steps[-1]),
        "steps_per_s": float(steps[-1] / train_s),
        "iteration_to_475": hit,
        "seconds_to_475": None if hit is None else float(seconds[hit]),
        "eval_return_mean": float(np.mean(returns)),
        "curve": {"env_steps": steps, "seconds": seconds, "episode_return": curve_returns},
        "torch_threads": torch.get_num_threads(),
        "stopped_at_target": bool(stop_at_target and hit is not None),
    }


# profile -------------------------------------------------------------------------------------

def network_flops() -> dict:
    """Multiply-add FLOPs (2 per MAC) per sample of one forward pass, biases ignored."""
    obs_dim, num_actions = 4, 2
    sizes = (obs_dim, *HIDDEN)
    hidden = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return {"policy": hidden + 2 * HIDDEN[-1] * num_actions, "value": hidden + 2 * HIDDEN[-1]}


def profile_iteration(trainer, reps: int, rounds: int, seed: int = 0,
                      include_step: bool = True) -> dict:
    """Times the pieces of one jaxpg PPO iteration, each jitted alone and looped `reps` times.

    Each piece runs inside a `fori_loop` whose carry feeds the next repetition (so XLA can
    neither hoist nor drop it); the per-repetition time is the loop's time / reps, median of
    `rounds` calls after a compile call, the pieces alternating. `step` is the whole
    `trainer.step`, for the sum check (`include_step`; quick mode skips its compile).
    """
    state = trainer.init(jax.random.key(seed))
    hp, stats = state.hparams, state.obs_stats

    def do_rollout(params, env_state, obs, key):
        return trainer.collect(state.replace(params=params), trainer.env_params, env_state, obs, key, NUM_STEPS)

    (_, _, _), batch = jax.jit(do_rollout)(state.params, state.env_state, state.obs, state.key)

    def do_advantages(params, batch):
        dones = (batch.terminated | batch.truncated).astype(jnp.float32)
        zeros = jnp.zeros((NUM_ENVS,))
        episode = episode_statistics(batch.reward, dones, zeros, zeros)
        values, next_values = trainer.value(params, stats, jnp.stack([batch.obs, batch.final_obs]))
        adv, targets = gae(batch.reward, values, next_values, batch.terminated,
                           batch.truncated, hp["gamma"], hp["gae_lambda"])
        return values, adv, targets, episode

    values, adv, targets, _ = jax.jit(do_advantages)(state.params, batch)
    flat = jax.tree.map(lambda x: x.reshape((BATCH,) + x.shape[2:]), (batch, values, adv, targets))

    def shuffle(key):
        keys = jax.random.split(key, EPOCHS)

        def one(k):
            perm = jax.random.permutation(k, BATCH)
            return jax.tree.map(lambda x: x[perm].reshape((MINIBATCHES, -1) + x.shape[1:]), flat)

        return jax.vmap(one)(keys)  # (epochs, minibatches, minibatch, ...)

    minibatches = jax.jit(shuffle)(state.key)

    def do_update(params, opt_state, minibatches):
        def minibatch_update(carry, minibatch):
            params, opt_state = carry
            (loss, _), grads = jax.value_and_grad(trainer.loss, has_aux=True)(
                params, stats, minibatch, hp)
            params, opt_state, _, _ = trainer.apply_gradients(params, opt_state, grads, loss, hp)
            return (params, opt_state), None

        def epoch(carry, epoch_minibatches):
            return jax.lax.scan(minibatch_update, carry, epoch_minibatches)

        return jax.lax.scan(epoch, (params, opt_state), minibatches)[0]

    # Every piece's outputs stay in the loop carry (nothing is dead code) and every input
    # depends on the carry (nothing is loop-invariant, so XLA cannot hoist it).
    def rollout_piece(c):
        env_state, obs, key, _ = c
        (env_state, obs, _), new_batch = do_rollout(state.params, env_state, obs, key)
        return env_state, obs, jax.random.fold_in(key, 1), new_batch

    def advantages_piece(c):
        previous, _, _, _ = c
        perturbed = batch._replace(reward=batch.reward + 1e-6 * previous,
                                   obs=batch.obs + 1e-6 * previous[..., None],
                                   final_obs=batch.final_obs + 1e-6 * previous[..., None])
        values, adv, targets, episode = do_advantages(state.params, perturbed)
        return 0.5 * targets + values, adv, targets, episode

    def permutation_piece(c):
        key, _ = c
        return jax.random.fold_in(key, 1), shuffle(key)

    pieces = {
        "rollout": (rollout_piece, (state.env_state, state.obs, state.key, batch)),
        "advantages": (advantages_piece, (values, adv, targets,
                                          jax.jit(do_advantages)(state.params, batch)[3])),
        "permutation": (permutation_piece, (state.key, minibatches)),
        "update": (lambda c: do_update(c[0], c[1], minibatches), (state.params, state.opt_state)),
    }
    if include_step:
        pieces["step"] = (lambda c: trainer._step(c[0])[0:1], (state,))
    out, calls = {}, {}
    for name, (body, init) in pieces.items():
        looped, compile_s = common.compile_ahead(
            lambda init, body=body: jax.lax.fori_loop(0, reps, lambda i, c: tuple(body(c)), init), init)
        out[name] = {"compile_s": compile_s, "reps": reps}
        calls[name] = lambda looped=looped, init=init: looped(init)
    # The pieces alternate, so load from other processes hits all of them alike.
    timing = common.alternate(calls, rounds, warmup=0)
    for name in pieces:
        out[name]["times_s"] = timing["times"][name]
        out[name]["seconds"] = timing["median"][name] / reps

    flops = network_flops()
    both = flops["policy"] + flops["value"]
    out["rollout"]["flops"] = BATCH * flops["policy"]
    out["advantages"]["flops"] = 2 * BATCH * flops["value"]  # V(obs) and V(final obs)
    out["permutation"]["flops"] = 0
    # Backward costs about twice the forward: gradients for activations and weights.
    out["update"]["flops"] = EPOCHS * BATCH * 3 * both
    if include_step:
        out["step"]["flops"] = sum(out[n]["flops"] for n in ("rollout", "advantages", "update"))

    # Cross-check of the analytic count: XLA's count for one minibatch loss + gradient.
    one = jax.tree.map(lambda x: x[0, 0], minibatches)
    lowered = jax.jit(lambda p: jax.value_and_grad(trainer.loss, has_aux=True)(p, stats, one, hp))
    try:
        cost = lowered.lower(state.params).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla = float(cost.get("flops")) if cost and cost.get("flops") is not None else None
    except Exception:  # cost analysis is best effort and backend-dependent
        xla = None
    out["xla_flops_one_minibatch_grad"] = xla
    out["analytic_flops_one_minibatch_grad"] = (BATCH // MINIBATCHES) * 3 * both
    out["flops_per_sample_forward"] = flops
    return out


# main ----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="jaxpg seed counts learning the full run (default 1 8); rejax "
                             "runs the same counts")
    parser.add_argument("--scaling-seeds", type=int, nargs="*",
                        help="seed counts timed on shortened runs, jaxpg and rejax (default 64 512; quick: none)")
    parser.add_argument("--iterations", type=int,
                        help=f"iterations of {BATCH} steps (default {FULL_ITERS}; quick {QUICK_ITERS})")
    parser.add_argument("--rounds", type=int, help="alternated rounds at 1 seed (default 5, quick 3)")
    parser.add_argument("--rounds-multi", type=int,
                        help="alternated rounds at more seeds (default 2, quick 1)")
    parser.add_argument("--sb3-seeds", type=int, help="SB3 runs (default 5, quick 1; 0 skips)")
    parser.add_argument("--sb3-iterations", type=int,
                        help="SB3 iterations (default: --iterations; quick 40)")
    parser.add_argument("--skip-rejax", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    quick = args.quick
    iterations = args.iterations or (QUICK_ITERS if quick else FULL_ITERS)
    seed_counts = args.seeds or [1, 8]
    scaling = args.scaling_seeds if args.scaling_seeds is not None else ([] if quick else [64, 512])
    rounds_1 = args.rounds or (3 if quick else 5)
    sb3_seeds = args.sb3_seeds if args.sb3_seeds is not None else (1 if quick else 5)
    rounds_multi = args.rounds_multi or (1 if quick else 2)
    sb3_iterations = args.sb3_iterations or iterations
    eval_episodes = 32 if quick else 100
    started = time.perf_counter()

    info = common.announce()

    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, **jaxpg_config(iterations))
    assert trainer.total_iterations == iterations
    algo = None if args.skip_rejax else make_rejax(iterations, env, env_params)

    runs, ratios = {}, {}
    jaxpg_states, rejax_params = {}, {}
    for num_seeds in seed_counts:
        print(f"  {num_seeds} seed(s), {iterations} iterations", flush=True)
        train_j = jax.jit(trainer.train) if num_seeds == 1 else jax.jit(jax.vmap(trainer.train))
        contenders = {"jaxpg": train_j}
        if algo is not None:
            contenders["rejax"] = (jax.jit(algo.train) if num_seeds == 1
                                   else jax.jit(jax.vmap(algo.train)))
        rounds = rounds_1 if num_seeds == 1 else rounds_multi
        t = common.compile_then_alternate(contenders, common.seed_keys(args.seed, num_seeds), rounds)
        steps = num_seeds * iterations * BATCH
        for name in contenders:
            runs[(name, num_seeds)] = {
                "peer": name, "seeds": num_seeds, "iterations": iterations, "env_steps": steps,
                "compile_s": t["compile_s"][name], "steady_s": t["steady_s"][name], "times_s": t["times_s"][name],
                "steps_per_s": steps / t["steady_s"][name],
            }
        if algo is not None:
            ratios[num_seeds] = {"jaxpg_over_rejax_steps_per_s": t["ratio"]["rejax"],
                                 "rounds": rounds}
            ts, _ = t["last"]["rejax"]
            p = ts.actor_ts.params
            rejax_params[num_seeds] = p if num_seeds > 1 else common.add_seed_axis(p)
        state, metrics = t["last"]["jaxpg"]
        jaxpg_states[num_seeds] = state if num_seeds > 1 else common.add_seed_axis(state)
        per_seed, curve = jaxpg_learning(metrics, num_seeds)
        r = runs[("jaxpg", num_seeds)]
        hit = common.first_crossing(curve, TARGET)
        per_iter = r["steady_s"] / iterations
        r["iteration_to_475"] = hit
        r["seconds_to_475"] = None if hit is None else (hit + 1) * per_iter
        r["seconds_to_475_with_compile"] = (None if hit is None
                                            else r["seconds_to_475"] + r["compile_s"])
        r["per_seed_iteration_to_475"] = [common.first_crossing(c, TARGET) for c in per_seed]
        r["curve_mean_return"] = curve
        r["final_train_return"] = per_seed[:, -1]
        print(f"    jaxpg {common.fmt_rate(r['steps_per_s'])} steps/s"
              + (f", jaxpg/rejax {ratios[num_seeds]['jaxpg_over_rejax_steps_per_s']:.2f}x"
                 if algo is not None else ""), flush=True)

    # Evaluation: every seed count's final policies in one batch per peer (one compile each), on
    # the same episode loop and keys, so both peers meet the same starts.
    counts, eval_key = list(jaxpg_states), jax.random.key(args.seed + 1000)
    returns = {"jaxpg": common.evaluate_seeds(
        trainer, common.concat_seeds([jaxpg_states[n] for n in counts]), eval_key, eval_episodes)}
    if algo is not None:
        returns["rejax"] = rejax_returns(algo, env, env_params, common.concat_seeds(
            [rejax_params[n] for n in counts]), eval_key, eval_episodes)
    for peer, values in returns.items():
        for n, piece in zip(counts, common.split_seeds(values, counts)):
            runs[(peer, n)]["eval_return_per_seed"] = piece

    for num_seeds in scaling:
        scale_iters = max(2, min(iterations, (1 << 21) // (num_seeds * BATCH)))
        print(f"  scaling: {num_seeds} seeds, {scale_iters} iterations", flush=True)
        scaled = jaxpg.make_trainer("ppo", env, env_params, **jaxpg_config(scale_iters))
        contenders = {"jaxpg": jax.jit(jax.vmap(scaled.train))}
        if algo is not None:
            contenders["rejax"] = jax.jit(jax.vmap(make_rejax(scale_iters, env, env_params).train))
        t = common.compile_then_alternate(contenders, common.seed_keys(args.seed, num_seeds), rounds_multi)
        steps = num_seeds * scale_iters * BATCH
        for name in contenders:
            steady = t["steady_s"][name]
            runs[(name, num_seeds)] = {
                "peer": name, "seeds": num_seeds, "iterations": scale_iters, "env_steps": steps,
                "compile_s": t["compile_s"][name], "steady_s": steady,
                "times_s": t["times_s"][name], "steps_per_s": steps / steady,
                "extrapolated_full_run_s": steady / scale_iters * FULL_ITERS,
            }
        if algo is not None:
            ratios[num_seeds] = {"jaxpg_over_rejax_steps_per_s": t["ratio"]["rejax"],
                                 "rounds": rounds_multi, "iterations": scale_iters}
        print(f"    jaxpg {common.fmt_rate(runs[('jaxpg', num_seeds)]['steps_per_s'])} steps/s"
              + (f", jaxpg/rejax {t['ratio']['rejax']:.2f}x" if algo is not None else ""), flush=True)

    sb3 = []
    for i in range(sb3_seeds):
        print(f"  SB3 seed {args.seed + i}, {sb3_iterations} iterations", flush=True)
        sb3.append(run_sb3(args.seed + i, sb3_iterations, eval_episodes, stop_at_target=quick))
        print(f"    {sb3[-1]['steps_per_s']:.0f} steps/s, to 475: "
              f"{common.fmt(sb3[-1]['seconds_to_475'])} s", flush=True)

    profile = None
    if not args.skip_profile:
        print("  profile", flush=True)
        profile = profile_iteration(trainer, reps=20 if quick else 50, rounds=7 if quick else 9,
                                    seed=args.seed, include_step=not quick)
    peak = common.peak_flops(info)

    # Tables ----------------------------------------------------------------------------------
    rows = []
    for (name, n), r in runs.items():
        ev = r.get("eval_return_per_seed")
        rows.append([
            name, n, f"{r['env_steps']:,}", f"{r['compile_s']:.1f}", f"{r['steady_s']:.2f}",
            common.fmt_rate(r["steps_per_s"]),
            common.fmt(r.get("seconds_to_475"), ".2f"),
            common.fmt(r.get("seconds_to_475_with_compile"), ".1f"),
            "—" if ev is None else f"{np.mean(ev):.1f} ± {np.std(ev):.1f}",
        ])
    for r in sb3:
        rows.append([
            "SB3 (torch, 1 thread)", f"1 (seed {r['seed']})", f"{r['env_steps']:,}", "—",
            f"{r['train_s']:.2f}", common.fmt_rate(r["steps_per_s"]), common.fmt(r["seconds_to_475"], ".2f"),
            common.fmt(r["seconds_to_475"], ".2f"), f"{r['eval_return_mean']:.1f}",
        ])
    table = common.markdown_table(
        ["peer", "seeds", "env steps", "compile (s)", "steady run (s)", "env steps/s",
         "to 475 (s)", "to 475 incl. compile (s)", "eval return (mean ± std over seeds)"],
        rows)

    # jaxpg vs SB3: median seconds per seed to 475. jaxpg's per-seed iterations come from its
    # largest learning run's curves, priced at its 1-seed steady seconds per iteration.
    summary = {}
    one = runs.get(("jaxpg", 1))
    largest = runs[("jaxpg", max(seed_counts))]
    hits = [h for h in largest["per_seed_iteration_to_475"] if h is not None]
    if one is not None and hits:
        per_iter = one["steady_s"] / one["iterations"]
        med = statistics.median(hits)
        summary["jaxpg_median_seed_s_to_475"] = (med + 1) * per_iter
        summary["jaxpg_median_seed_s_to_475_with_compile"] = (med + 1) * per_iter + one["compile_s"]
        summary["jaxpg_seeds_reaching_475"] = f"{len(hits)}/{largest['seeds']}"
    sb3_hits = [r["seconds_to_475"] for r in sb3 if r["seconds_to_475"] is not None]
    if sb3:
        summary["sb3_seeds_reaching_475"] = f"{len(sb3_hits)}/{len(sb3)}"
        summary["sb3_median_s_to_475"] = statistics.median(sb3_hits) if sb3_hits else None
        # Not reached: the run's length is a lower bound on SB3's time to 475.
        summary["sb3_lower_bound_s"] = None if sb3_hits else max(r["train_s"] for r in sb3)
    ratio_rows = []
    for n, r in ratios.items():
        x = r["jaxpg_over_rejax_steps_per_s"]
        ratio_rows.append([f"jaxpg / rejax steady steps/s, {n} seed(s)", f"{x:.2f}x",
                           ">= 1.5x", "met" if x >= 1.5 else "not met",
                           f"median of {r['rounds']} alternated rounds"
                           + (f", {r['iterations']}-iteration runs" if "iterations" in r else "")])
    if "jaxpg_median_seed_s_to_475" in summary and sb3:
        sb3_s = summary["sb3_median_s_to_475"] or summary["sb3_lower_bound_s"]
        bound = "" if summary["sb3_median_s_to_475"] else ">= "
        for label, key in (("run", "jaxpg_median_seed_s_to_475"),
                           ("incl. compile", "jaxpg_median_seed_s_to_475_with_compile")):
            x = sb3_s / summary[key]
            summary[f"sb3_over_jaxpg_to_475_{'run' if label == 'run' else 'with_compile'}"] = x
            ratio_rows.append([
                f"SB3 / jaxpg seconds to 475, 1 seed ({label})", f"{bound}{x:.1f}x", ">= 50x",
                "met" if x >= 50 else ("not met" if not bound else "undecided"),
                f"jaxpg {summary[key]:.2f} s (median seed of {largest['seeds']}), SB3 "
                f"{bound}{sb3_s:.1f} s ({summary['sb3_seeds_reaching_475']} seeds reached)"])
    ratio_table = common.markdown_table(["ratio", "value", "goal", "", "how"], ratio_rows)

    profile_table = None
    if profile is not None:
        names = ["rollout", "advantages", "permutation", "update"]
        whole = sum(profile[n]["seconds"] for n in names)
        if "step" in profile:
            names.append("step")
            whole = profile["step"]["seconds"]
        prow = []
        for name in names:
            p = profile[name]
            gflops = p["flops"] / p["seconds"] / 1e9
            prow.append([
                name if name != "step" else "whole iteration (trainer.step)",
                f"{p['seconds'] * 1e3:.3f}", f"{100 * p['seconds'] / whole:.0f}%",
                f"{p['flops'] / 1e6:.1f}", f"{gflops:.2f}",
                "—" if not peak["flops_per_s"] else f"{100 * gflops * 1e9 / peak['flops_per_s']:.1f}%",
            ])
        in_scan = runs[("jaxpg", 1)]["steady_s"] / iterations if ("jaxpg", 1) in runs else None
        prow.append(["iteration inside the training scan (1 seed)", common.fmt(
            None if in_scan is None else in_scan * 1e3, ".3f"), "", "", "", ""])
        profile_table = common.markdown_table(
            ["piece of one iteration", "ms", "of step" if "step" in profile else "of the pieces",
             "MFLOP", "GFLOP/s", "of peak"], prow)

    caption = (f"{common.device_label(info)}; load average at start {info['load_average']}; "
               f"peak estimate {peak['note']}")
    print()
    print(table)
    print()
    print(ratio_table)
    if profile_table:
        print()
        print(profile_table)
        print(f"\nXLA cost analysis, one minibatch loss+grad: "
              f"{profile['xla_flops_one_minibatch_grad']} FLOPs "
              f"(analytic {profile['analytic_flops_one_minibatch_grad']})")
    print()
    print(caption)
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")

    payload = {
        "benchmark": "ppo_cartpole",
        "machine": info,
        "peak_flops": peak,
        "config": {
            "iterations": iterations, "num_envs": NUM_ENVS, "num_steps": NUM_STEPS,
            "update_epochs": EPOCHS, "num_minibatches": MINIBATCHES, "hidden_sizes": HIDDEN,
            "activation": "tanh", "lr_schedule": "linear", **HP, "quick": quick, "seed": args.seed,
            "seed_counts": seed_counts, "scaling_seeds": scaling, "rounds_1_seed": rounds_1,
            "rounds_multi_seed": rounds_multi, "compile": "jit(f).lower(keys).compile() wall time",
            "sb3_seeds": sb3_seeds, "sb3_iterations": sb3_iterations,
            "eval_episodes": eval_episodes, "target_return": TARGET,
            "rejax": None if algo is None else
            "gymnax.wrappers.compat.LegacyStepAPIWrapper over envs CartPole-v1; elementwise "
            "grad clip, separate actor/critic Adam (eps 1e-8), lecun-normal init",
            "sb3": "DummyVecEnv x4 gymnasium CartPole-v1, vf_coef 0.25 (MSE without 1/2), "
                   "clip_range_vf None, torch 1 thread",
        },
        "runs": list(runs.values()),
        "jaxpg_over_rejax": ratios,
        "sb3": sb3,
        "time_to_475": summary,
        "profile": profile,
        "tables": {"runs": table, "ratios": ratio_table, "profile": profile_table},
        "caption": caption,
        "total_s": elapsed,
    }
    path = common.write_results("ppo_cartpole_quick" if quick else "ppo_cartpole", payload,
                                args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
