"""Sweeps: every setting x seed trained as one program through `jaxpg.fit`, then ranked.

    table = jaxpg.sweep("CartPole-v1", "ppo", grid={"lr": [1e-4, 3e-4, 1e-3], "ent_coef": [0, 0.01]},
                        seeds=4, out="runs/sweep")

A setting is one value per swept name: a traced hyperparameter (`lr`, `ent_coef`, ...; `grid`
takes the product of lists, `random` draws `trials` settings from distributions) and, with
`env_grid`, a field of the environment's parameters. Because hyperparameters and environment
parameters are inputs of the compiled program, not constants in it, the whole sweep is one
`jaxpg.fit` call over settings x seeds runs: sharded over the devices, checkpointed and
resumable like any run. Every setting uses the same seeds (common random numbers), so
differences between settings are not differences between their seeds' luck.
"""

import csv
import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import envs
from jaxpg import presets as preset_table
from jaxpg.core.evaluate import DEFAULT_EPISODES
from jaxpg.presets.build import make_trainer
from jaxpg.run.fit import compile_evaluation, evaluate_runs, fit
from jaxpg.run.options import RunOptions
from jaxpg.run.sharding import host_copy, is_main_process

DISTRIBUTIONS = ("uniform", "loguniform", "choice")
LIMIT = "max_steps_in_episode"


def parse_distribution(name: str, text: str):
    """`uniform:LO:HI`, `loguniform:LO:HI` or `choice:A:B:...` -> `(kind, values)`; ValueError
    naming the field and the accepted forms."""
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = None
    if kind not in DISTRIBUTIONS or values is None or (kind != "choice" and len(values) != 2) or not values:
        raise ValueError(f"--random {name}={text!r} is not a distribution; accepted: uniform:LO:HI, "
                         "loguniform:LO:HI (LO > 0) or choice:A:B:...")
    if kind == "loguniform" and min(values) <= 0:
        raise ValueError(f"--random {name}={text!r}: loguniform needs 0 < LO < HI")
    if kind != "choice" and values[0] >= values[1]:
        raise ValueError(f"--random {name}={text!r}: needs LO < HI")
    return kind, values


def draw_settings(random: dict, trials: int, seed: int) -> list[dict]:
    """`trials` settings drawn from `random` (name -> distribution text or `(kind, values)`)."""
    rng = np.random.default_rng(seed)
    parsed = {k: parse_distribution(k, v) if isinstance(v, str) else v for k, v in random.items()}
    settings = []
    for _ in range(trials):
        setting = {}
        for name, (kind, values) in parsed.items():
            if kind == "uniform":
                setting[name] = float(rng.uniform(*values))
            elif kind == "loguniform":
                setting[name] = float(math.exp(rng.uniform(math.log(values[0]), math.log(values[1]))))
            else:
                setting[name] = float(values[rng.integers(len(values))])
        settings.append(setting)
    return settings


def product(grid: dict) -> list[dict]:
    """Every combination of `grid`'s lists, the first name varying slowest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(list(grid[n]) for n in names))]


def sweep(env_id: str, algo: str, grid: dict | None = None, random: dict | None = None, trials: int = 0,
          env_grid: dict | None = None, seeds: int = 4, seed: int = 0, env_options: dict | None = None,
          options: dict | None = None, preset="auto", threshold: float | None = None,
          eval_episodes: int = DEFAULT_EPISODES, out: str | None = None, resume: bool = False,
          **run_options) -> list[dict]:
    """Trains every setting x seed in one `jaxpg.fit` call; returns the rows ranked best first.

    Args:
      env_id, env_options: the environment (`envs.make(env_id, **env_options)`).
      algo: `reinforce`, `ppo` or `grpo`.
      grid: hyperparameter name -> list of values; every combination is a setting.
      random: hyperparameter name -> `"loguniform:1e-5:1e-2"` (or uniform, choice), with
        `trials` settings drawn (seeded by `seed`); combined with `grid` by product.
      env_grid: environment parameter field -> list of values (e.g. CartPole's `length` or
        `max_steps_in_episode`); combined with the rest by product. A field that no training
        program reads (LQR's `gamma`, which only the references use: the trainer's `gamma`
        hyperparameter is the discount) is refused before anything compiles. With
        `max_steps_in_episode`, the trainer is built on the grid's largest value (REINFORCE's
        `num_steps`, GRPO's `max_steps` when left to the environment, and the evaluation
        horizon cover every setting) and each run's episodes end at its own setting's limit.
      seeds: seeds per setting (the same seeds for every setting).
      options: other trainer options, fixed across the sweep; `preset` as in `make_trainer`
        (`"auto"`: the environment's preset for `algo`, if any).
      threshold: the training return whose first crossing (seed mean) is reported as steps to
        threshold; default the preset's, else none.
      eval_episodes: deterministic evaluation episodes per seed at the end, as `jaxpg train`
        evaluates (the same default, the same keys).
      out: folder for the run (metrics, checkpoints) and `sweep.csv`, `sweep.md`, `sweep.png`.
      resume: continue the sweep in `out` from its newest checkpoint.
      run_options: `jaxpg.RunOptions` (`checkpoint_every`, `shard`, `progress`, ...).

    Returns:
      One dict per setting, best final evaluation return first: the setting's values, `rank`,
      `eval_mean`, `eval_ci95` (half-width of the 95% t interval over seeds), `eval_per_seed`,
      `final_train_return`, `steps_to_threshold` (None if never reached).
    """
    RunOptions.from_options(run_options)  # refused before anything is built
    env, env_params = envs.make(env_id, **(env_options or {}))
    if preset == "auto":
        preset = preset_table.find(env_id, algo, env_options)
    grid, random, env_grid = dict(grid or {}), dict(random or {}), dict(env_grid or {})
    # Static lengths (REINFORCE's num_steps, GRPO's max_steps when left to the environment, the
    # evaluation's scan) are read from the trainer's env_params: they must cover the longest
    # setting, and each run's episodes still end at its own limit (its own env_params).
    build_params = env_params
    if LIMIT in env_grid and hasattr(env_params, LIMIT):
        build_params = env_params.replace(**{LIMIT: int(max(env_grid[LIMIT]))})
    trainer = make_trainer(algo, env, build_params, preset=preset, **(options or {}))
    if threshold is None and preset is not None and getattr(preset, "measure", None) == "eval_return":
        threshold = preset.threshold
    _check_names(trainer, env_params, grid, random, env_grid)
    _check_env_fields_read(trainer, build_params, env_grid, env_id)
    if random and trials < 1:
        raise ValueError(f"trials={trials} must be a positive integer with random (e.g. trials=32)")
    if seeds < 1:
        raise ValueError(f"seeds={seeds} must be a positive integer")
    hparam_settings = product(grid)
    if random:
        hparam_settings = [{**g, **r} for g in hparam_settings for r in draw_settings(random, trials, seed)]
    settings = [{**h, **e} for h in hparam_settings for e in product(env_grid)]
    if len(settings) < 1 or not (grid or random or env_grid):
        raise ValueError("a sweep needs at least one of grid, random (with trials) or env_grid")
    for setting in settings:  # every value checked before anything compiles
        trainer.config.check_hparams({k: v for k, v in setting.items() if k in grid or k in random})

    num_settings, num_runs = len(settings), len(settings) * seeds
    # Runs are setting-major: run i is setting i // seeds, seed i % seeds.
    seed_keys = jax.random.split(jax.random.key(seed), seeds)
    keys = jnp.concatenate([seed_keys] * num_settings)
    hparams = {name: np.repeat(np.asarray([s[name] for s in settings], np.float32), seeds)
               for name in [*grid, *random]}
    run_env_params = None
    if env_grid:
        run_env_params = env_params.replace(**{
            name: np.repeat(np.asarray([s[name] for s in settings], np.asarray(getattr(env_params, name)).dtype), seeds)
            for name in env_grid
        })
        run_env_params = jax.tree.map(
            lambda x: x if np.shape(x)[:1] == (num_runs,) else np.broadcast_to(x, (num_runs, *np.shape(x))),
            run_env_params)
    record = {"sweep": {"env": env_id, "algo": algo, "settings": settings, "seeds": seeds}}
    # The protocol of `jaxpg train` (shared code): the same keys per seed, deterministic unless the
    # preset's criterion samples, each run on its own environment parameters; its program
    # compiles beside training's.
    deterministic = getattr(preset, "eval_deterministic", True)
    compile_evaluation(trainer, keys, seed, eval_episodes, hparams or None, run_env_params, deterministic)
    state, metrics = fit(trainer, keys, hparams or None, run_env_params, out=out, record=record, resume=resume,
                         **run_options)
    returns = evaluate_runs(trainer, host_copy(state), seed, seeds, eval_episodes, run_env_params,
                            deterministic).mean(axis=1)
    rows = _rank(settings, seeds, returns, metrics, threshold)
    if out is not None and is_main_process():
        write_table(out, rows, [*grid, *random, *env_grid])
        plot_settings(os.path.join(out, "sweep.png"), settings, seeds, metrics)
    return rows


def _check_names(trainer, env_params, grid, random, env_grid):
    traced = set(trainer.Config.hparam_names())
    for name in [*grid, *random]:
        if name in grid and name in random:
            raise ValueError(f"{name} is in both grid and random; sweep it one way")
        if name not in traced:
            static = name in trainer.Config.specs()
            why = "a static setting (it shapes the program: sweep it with separate runs)" if static else "unknown"
            raise ValueError(f"cannot sweep {name!r}: {why}; accepted: the traced hyperparameters "
                             f"{', '.join(sorted(traced))}")
    fields = [f for f in getattr(env_params, "__dataclass_fields__", {})]
    for name in env_grid:
        if name not in fields:
            raise ValueError(f"env_grid field {name!r} is not a parameter of this environment; accepted: "
                             f"{', '.join(fields)}")
        if np.ndim(getattr(env_params, name)) != 0:
            raise ValueError(f"env_grid field {name!r} is an array; accepted: scalar fields")
        if np.issubdtype(np.asarray(getattr(env_params, name)).dtype, np.integer):
            bad = [v for v in env_grid[name] if float(v) != int(v) or (name == LIMIT and v < 1)]
            if bad:
                raise ValueError(f"env_grid field {name!r} takes {'positive ' if name == LIMIT else ''}integers; "
                                 f"got {bad}")


def unread_env_fields(trainer, env_params, names) -> list[str]:
    """The fields among `names` (of `env_params`) that no training program reads.

    Traces (does not compile) `init` and one training iteration with `env_params` as an argument
    and keeps every output; dead-code elimination then says which inputs reach one. It descends
    into the scan, cond and jit bodies; a primitive without an elimination rule (a while loop)
    counts all its inputs as used, so a field is only ever reported unread when it is.

    Returns:
      The names in `names` none of whose leaves any output depends on.
    """
    from jax._src.interpreters import partial_eval as pe

    def one_iteration(key, hparams, params):
        return trainer._iterate(trainer._init(key, hparams, params), params, 1)

    closed = jax.make_jaxpr(one_iteration)(jax.random.key(0), trainer.resolve_hparams(None), env_params)
    _, used = pe.dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(env_params)[0]]
    used = used[len(used) - len(paths):]  # env_params are the last inputs
    read = {getattr(path[0], "name", None) for path, u in zip(paths, used) if u and path}
    return [name for name in names if name not in read]


def _check_env_fields_read(trainer, env_params, env_grid, env_id):
    """Refuses an env_grid field that no training program reads: every setting would train the
    same runs and the table would rank ties."""
    for name in unread_env_fields(trainer, env_params, list(env_grid)):
        hint = ""
        if name in trainer.Config.hparam_names():
            hint = (f"; the trainer's {name!r} hyperparameter is the one training reads: sweep it with "
                    f"grid={{{name!r}: [...]}} (CLI: --grid {name}=...)")
        raise ValueError(f"env_grid field {name!r} is read by no training program of {env_id} (only outside "
                         f"training, e.g. by references), so every setting would train the same runs{hint}")


def _rank(settings, seeds, returns, metrics, threshold):
    train = np.asarray(metrics["episode_return"], np.float64)
    steps = np.asarray(metrics["env_steps"])[0]
    rows = []
    for i, setting in enumerate(settings):
        block = slice(i * seeds, (i + 1) * seeds)
        per_seed = returns[block]
        half_width = (float(stats.t.ppf(0.975, seeds - 1) * per_seed.std(ddof=1) / math.sqrt(seeds))
                      if seeds > 1 else float("nan"))
        curve = np.nanmean(train[block], axis=0)
        reached = None
        if threshold is not None and (curve >= threshold).any():
            reached = int(steps[np.argmax(curve >= threshold)])
        rows.append({**setting, "eval_mean": float(per_seed.mean()), "eval_ci95": half_width,
                     "eval_per_seed": per_seed.tolist(), "final_train_return": float(curve[-1]),
                     "steps_to_threshold": reached, "setting": i})
    rows.sort(key=lambda r: -r["eval_mean"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def write_table(out: str, rows: list[dict], names: list[str]) -> None:
    """`sweep.csv` (every column) and `sweep.md` (the ranked table) in `out`."""
    columns = ["rank", *names, "eval_mean", "eval_ci95", "final_train_return", "steps_to_threshold"]
    with open(os.path.join(out, "sweep.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, "eval_per_seed"])
        for row in rows:
            writer.writerow([row[c] for c in columns] + [json.dumps(row["eval_per_seed"])])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    for row in rows:
        cells = [_cell(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    with open(os.path.join(out, "sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_settings(path: str, settings, seeds, metrics) -> None:
    """Each setting's training curve (seed mean) on one plot."""
    from jaxpg.run.results import plot_runs

    runs = []
    for i, setting in enumerate(settings):
        block = slice(i * seeds, (i + 1) * seeds)
        label = ", ".join(f"{k}={_cell(v)}" for k, v in setting.items())
        runs.append((label, {k: np.asarray(v)[block] for k, v in metrics.items()}))
    plot_runs(path, runs)
