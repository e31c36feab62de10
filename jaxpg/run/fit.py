"""The run driver: many runs trained in host-driven chunks, with streamed metrics and checkpoints.

`fit` vmaps `trainer.init` and `trainer.iterate` over a runs axis (seeds, and optionally
hyperparameters and environment parameters per run) and calls the compiled chunk program from
the host. Between chunks it writes the chunk's metrics, feeds the sinks, updates the progress
bar and saves checkpoints; no compiled program holds a host callback, so JAX's persistent
compilation cache can serve every one of them. Because chunks compose bit for bit and their
boundaries sit at fixed multiples of `chunk_size`, a resumed run replays exactly the programs
the uninterrupted run would have, on the same state: it ends identical.
"""

import json
import math
import os
import threading
import time
from concurrent.futures import Future

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxpg.algos.trainer import warn_nonfinite
from jaxpg.core import compile_options
from jaxpg.core.evaluate import evaluate
from jaxpg.run import metrics_files
from jaxpg.run.checkpoint import Checkpoints
from jaxpg.run.compile_cache import CacheHits
from jaxpg.run.options import RunOptions
from jaxpg.run.sharding import Layout, host_copy, is_main_process, put_keys

# Chunks per run when the size is chosen automatically: about 1% granularity for the progress
# bar, and few enough calls that dispatch stays small beside the work (benchmarks/chunked.py).
TARGET_CHUNKS = 50


class NonFiniteUpdate(RuntimeError):
    """Raised by `fit(..., on_nonfinite="stop")` at the first non-finite update.

    Attributes:
      run, iteration: where it happened (the earliest iteration over all runs, and its run).
      state: every run's state before that iteration (also saved as a checkpoint when `out`).
      metrics: the metrics of the iterations before it.
    """

    def __init__(self, run: int, iteration: int, state, metrics, checkpoint: str | None):
        where = f" saved in {checkpoint}" if checkpoint else ""
        super().__init__(
            f"non-finite update at run {run}, iteration {iteration}; the run stopped there and the "
            f"state before it is kept{where}"
        )
        self.run, self.iteration, self.state, self.metrics, self.checkpoint = run, iteration, state, metrics, checkpoint


class Fitted(tuple):
    """What `fit` returns: `(state, metrics)`, so `state, metrics = fit(...)` unpacks it, and
    `.report`: compile and run seconds, the compile cache's hits and misses, the chunk size, the
    iteration resumed from (None for a fresh run) and the layout used."""

    def __new__(cls, state, metrics, report: dict):
        fitted = super().__new__(cls, (state, metrics))
        fitted.report = report
        return fitted


def choose_chunk_size(total: int, checkpoint_every: int | None = None) -> int:
    """About `total / TARGET_CHUNKS` iterations: the divisor of `checkpoint_every` (which chunk
    boundaries must meet) or else of the run's length (so no second program is compiled for a
    last, shorter chunk) closest to that on a log scale."""
    target = max(1, math.ceil(total / TARGET_CHUNKS))
    period = checkpoint_every or total
    divisors = [d for d in range(1, period + 1) if period % d == 0]
    return min(divisors, key=lambda d: abs(math.log(d / target)))


def _json(value):
    """`value` as it reads back from JSON (tuples become lists, unknown objects strings)."""
    return json.loads(json.dumps(value, default=str))


def _env_axes(trainer, env_params, num_runs):
    """`(env_params, vmap axis)`: shared (None) or one setting per run (0), checked."""
    if env_params is None:
        return trainer.env_params, None
    ref = jax.tree.leaves(trainer.env_params)
    given = jax.tree.leaves(env_params)
    if jax.tree.structure(env_params) != jax.tree.structure(trainer.env_params):
        raise ValueError("env_params must have the structure of trainer.env_params")
    if all(np.shape(g) == np.shape(r) for g, r in zip(given, ref)):
        return env_params, None
    if all(np.shape(g) == (num_runs, *np.shape(r)) for g, r in zip(given, ref)):
        return env_params, 0
    raise ValueError(
        f"env_params leaves must be shaped like trainer.env_params's (shared by all runs) or carry "
        f"a leading runs axis of {num_runs}"
    )


def _run_hparams(trainer, hparams, num_runs):
    """`(hparams, vmap axes)`: each hyperparameter shared by all runs (a scalar, axis None, as
    `jax.vmap(trainer.train)` sees it) or one per run (`(num_runs,)`, axis 0), checked."""
    merged = {k: jnp.asarray(v, jnp.float32) for k, v in trainer.resolve_hparams(hparams).items()}
    for name, value in merged.items():
        if value.shape not in ((), (num_runs,)):
            raise ValueError(f"hparams[{name!r}] has shape {value.shape}; accepted: () or ({num_runs},), one per run")
    return merged, {k: None if v.shape == () else 0 for k, v in merged.items()}


def fit(trainer, keys, hparams=None, env_params=None, out: str | None = None, *, resume: bool = False,
        allow_changes=(), sinks=(), record: dict | None = None, devices=None, on_start=None, after_chunk=None,
        align_chunks: int | None = None, **options):
    """Trains one run per key, from the host in chunks; the runs of one chunk are one program.

    Args:
      trainer: a jaxpg trainer.
      keys: `(R,)` PRNG keys, one per run (`jax.random.split(key, R)`).
      hparams: optional dict of hyperparameters, each a scalar (all runs) or `(R,)` (one per run).
      env_params: optional environment parameters, shaped like `trainer.env_params` (all runs)
        or with a leading `R` axis (one setting per run).
      out: run directory for metrics, checkpoints and sinks; None keeps metrics in memory only.
      resume: continue from the newest checkpoint in `out` that restores (a fresh run if there is
        none); the config must match the saved one except for the fields in `allow_changes`.
      allow_changes: config fields that may differ on resume (e.g. `("total_timesteps",)`).
        A longer `total_timesteps` continues on the longer run's learning-rate schedule from the
        update reached: the iterations before the checkpoint keep the rates the shorter run
        used, and from it on the rates are exactly those of a run planned that long from the
        start (Adam's update count carries on). A decaying schedule therefore rises at the
        resume, to where the longer schedule stands at that update. Shortening below the
        iteration reached is refused.
      sinks: objects with `open(record)`, `write(chunk, iterations)`, `close()` (`jaxpg.run.sinks`),
        beside those the options ask for (`tensorboard`, `wandb`).
      record: JSON-able facts about the run stored with every checkpoint (env id, options, ...).
      on_start: optional `on_start()`, called once (on process 0) when the first chunk of this
        call has trained, before any checkpoint of it is saved: the CLI records a resumed run's
        new options there, so a resume that fails earlier (restoring, compiling) changes nothing.
      after_chunk: optional `after_chunk(state, chunk, done) -> state`, called after every chunk
        (on every process) with the batched state (padded runs included), the chunk's metrics
        (host arrays `(R, n)`, `iteration` among them) and the iterations done; the state it
        returns trains on and is what a checkpoint at `done` saves (`jaxpg.pbt`'s exploit step).
      align_chunks: chunk boundaries must meet every multiple of this many iterations (the
        automatic chunk size divides it; `jaxpg.pbt` passes `ready_every`).
      devices: the devices to use; default every device of every process (`jax.devices()`).
        On many hosts, every process calls `fit` alike after `jax.distributed.initialize`;
        process 0 writes the metrics files and feeds the sinks.
      **options: the run options, `jaxpg.RunOptions` (`chunk_size`, `metrics_every`,
        `checkpoint_every`, `keep_checkpoints`, `on_nonfinite`, `shard`, `progress`,
        `tensorboard`, `wandb`), checked against their declaration before anything compiles.
        `shard="runs"` pads a run count the device count does not divide and drops the padding;
        a fixed layout gives the same bits in one process or many (`jaxpg.run.sharding`).

    Returns:
      `(state, metrics)`: the final batched `TrainState` (global arrays on the layout's devices;
      host arrays when runs were padded) and the kept metrics as host arrays `(R, rows)`,
      `metrics["iteration"]` saying which iterations they are, as a `Fitted` whose `.report`
      holds compile and run seconds, the compile cache's hits and the layout used.
    """
    options = RunOptions.from_options(options)
    chunk_size, metrics_every, checkpoint_every = options.chunk_size, options.metrics_every, options.checkpoint_every
    on_nonfinite = options.on_nonfinite
    if checkpoint_every is not None and out is None:
        raise ValueError("checkpoint_every needs out (a run directory)")
    keys = jnp.asarray(keys)
    if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) or keys.ndim != 1:
        raise ValueError("keys must be a 1-D array of typed PRNG keys, e.g. jax.random.split(jax.random.key(0), 8)")
    sinks = [*sinks, *options.sinks(out)]
    num_runs, total = keys.shape[0], trainer.total_iterations
    run_hparams, hparam_axes = _run_hparams(trainer, hparams, num_runs)
    env_params, env_axis = _env_axes(trainer, env_params, num_runs)
    chunk_size = chunk_size or choose_chunk_size(total, align_chunks or checkpoint_every)
    layout = Layout.make(options.shard, num_runs, getattr(trainer.config, "num_envs", None), devices)
    main = is_main_process()

    # Inputs enter as global arrays, padded to the layout's run count.
    placed_keys = put_keys(layout.pad(jax.random.key_data(keys), 0), jax.random.key_impl(keys), layout.per_run())
    placed_hparams = {k: layout.put(layout.pad(v, hparam_axes[k]), hparam_axes[k]) for k, v in run_hparams.items()}
    placed_env_params = layout.put(layout.pad(env_params, env_axis), env_axis)
    vmapped_init = jax.vmap(trainer._init, in_axes=(0, hparam_axes, env_axis))
    like = jax.eval_shape(vmapped_init, placed_keys, placed_hparams, placed_env_params)
    state_shardings = layout.state_shardings(like)
    init = jax.jit(layout.per_device(vmapped_init, (0, hparam_axes, env_axis)), out_shardings=state_shardings,
                   compiler_options=compile_options.run_once(layout.mesh.devices.flat[0].platform))
    # Compiled programs are kept on the trainer, so calling fit again (a benchmark, a notebook)
    # compiles nothing: keyed by what shapes the program and where it runs.
    signature = (num_runs, env_axis, tuple(sorted(hparam_axes.items())), layout.mode,
                 tuple(d.id for d in layout.mesh.devices.flat),
                 str(jax.tree.map(lambda x: (np.shape(x), str(getattr(x, "dtype", type(x)))), env_params)))
    programs = trainer.__dict__.setdefault("_fit_programs", {}).setdefault(signature, {})

    def chunk_program(n):
        def chunk(state, env_params):  # named: JAX's compile events report programs by name
            return trainer._iterate(state, env_params, n)

        body = jax.vmap(chunk, in_axes=(0, env_axis))
        return jax.jit(layout.per_device(body, (0, env_axis)), out_shardings=(state_shardings, layout.per_run()))

    cache = CacheHits.get()
    hits_before = cache.snapshot()
    started = time.perf_counter()
    config_record = _json(trainer.config.as_dict())
    hparams_record = _json({k: np.broadcast_to(v, (num_runs,)).tolist() for k, v in run_hparams.items()})
    checkpoints = Checkpoints(out, options.keep_checkpoints) if out is not None else None
    # Process 0 writes the metrics files; the others keep the (identical, gathered) rows in memory.
    writer = metrics_files.MetricsWriter(out, num_runs) if out is not None and main else None
    restored = None
    if checkpoints is not None:
        if resume:
            restored = checkpoints.restore_latest(like, jax.random.key_impl(keys), state_shardings)
            if restored is None and checkpoints.steps():
                raise ValueError(
                    f"none of the checkpoints in {checkpoints.directory} restores for this run (see the warnings); "
                    f"nothing was overwritten. This layout trains {layout.padded_runs} runs (padded to "
                    f"{layout.num_devices} devices): resume on a device count that pads the runs as before"
                )
        elif checkpoints.steps():
            raise ValueError(f"{out} already holds checkpoints; pass resume=True to continue it, or another out")
    if restored is not None:
        done, state, saved = restored
        _check_same_run(saved, config_record, hparams_record, keys, allow_changes)
        if done > total:
            raise ValueError(
                f"cannot resume: the checkpoint is at iteration {done}, past this run's {total} iterations; "
                f"total_timesteps must cover at least {done * trainer.steps_per_iteration} env steps"
            )
        if writer is not None:
            writer.truncate(saved["metrics_position"])
        if saved.get("chunk_size"):
            chunk_size = saved["chunk_size"]
        compile_init = 0.0
    else:
        done = 0
        if "init" not in programs:
            programs["init"] = init.lower(placed_keys, placed_hparams, placed_env_params).compile()
        compiled = programs["init"]
        compile_init = time.perf_counter() - started
        state = compiled(placed_keys, placed_hparams, placed_env_params)
        if writer is not None:
            metrics_files.remove(out)  # a fresh run starts its files afresh
            writer = metrics_files.MetricsWriter(out, num_runs)

    base_record = {
        **(record or {}), "num_runs": num_runs, "config": config_record, "hparams": hparams_record,
        "hparams_per_run": [{k: v[i] for k, v in hparams_record.items()} for i in range(num_runs)],
        "initial_keys": np.asarray(jax.random.key_data(keys)).tolist(), "chunk_size": chunk_size,
        "metrics_every": metrics_every, "total_iterations": total,
        "shard": layout.mode, "num_devices": layout.num_devices, "padded_runs": layout.padded_runs,
    }
    sinks = sinks if main else ()
    for sink in sinks:
        sink.open(base_record)

    def save(step, state):
        position = writer.position() if writer is not None else None
        checkpoints.save(step, state, {**base_record, "iteration": step, "metrics_position": position})

    compile_chunks, in_memory = 0.0, []
    bar = tqdm(total=total, initial=done, unit="it", desc=f"{trainer.algo} x {num_runs}",
               dynamic_ncols=True, disable=not (options.progress and main))
    run_started, steps_at_start = time.perf_counter(), done
    try:
        while done < total:
            n = min(chunk_size, total - done)
            if n not in programs:
                t0 = time.perf_counter()
                programs[n] = chunk_program(n).lower(state, placed_env_params).compile()
                compile_chunks += time.perf_counter() - t0
                run_started += time.perf_counter() - t0
            start_state = state
            state, metrics = programs[n](state, placed_env_params)
            chunk = {k: np.asarray(v)[:num_runs] for k, v in host_copy(metrics).items()}
            iterations = np.arange(done, done + n)
            chunk["iteration"] = np.broadcast_to(iterations, (num_runs, n)).astype(np.int32)
            bad = np.argwhere(np.asarray(chunk["nonfinite"]))
            if on_nonfinite == "stop" and len(bad):
                run, offset = bad[np.argmin(bad[:, 1])]
                state = start_state if offset == 0 else chunk_program(int(offset))(start_state, placed_env_params)[0]
                chunk = {k: v[:, :offset] for k, v in chunk.items()}
                _emit(chunk, iterations[:offset], metrics_every, total, writer, sinks, in_memory)
                where = None
                if checkpoints is not None:
                    save(done + int(offset), state)
                    where = os.path.join(checkpoints.directory, str(done + int(offset)))
                raise NonFiniteUpdate(int(run), done + int(offset), layout.unpad(state),
                                      _collect(writer, out, in_memory), where)
            _emit(chunk, iterations, metrics_every, total, writer, sinks, in_memory)
            if on_start is not None and main:
                on_start()
                on_start = None
            done += n
            if after_chunk is not None:
                state = jax.device_put(after_chunk(state, chunk, done), state_shardings)
            latest = np.asarray(chunk["episode_return"])[:, -1]
            elapsed = max(time.perf_counter() - run_started, 1e-9)
            bar.set_postfix({
                "return": f"{np.nanmean(latest):.4g}" if np.isfinite(latest).any() else "-",
                "env steps/s": f"{(done - steps_at_start) * trainer.steps_per_iteration * num_runs / elapsed:.3g}",
            }, refresh=False)
            bar.update(n)
            if checkpoints is not None and checkpoint_every and (done % checkpoint_every == 0 or done == total):
                save(done, state)
    finally:
        bar.close()
        for sink in sinks:
            sink.close()
    if checkpoints is not None and not checkpoint_every:
        save(done, state)
    jax.block_until_ready(state)
    run_seconds = time.perf_counter() - run_started
    if checkpoints is not None:
        checkpoints.close()
    metrics = _collect(writer, out, in_memory)
    if on_nonfinite == "skip":
        warn_nonfinite(metrics.get("nonfinite", np.zeros((num_runs, 0), bool)))
    hits_after = cache.snapshot()
    report = {
        "compile_seconds": compile_init + compile_chunks, "run_seconds": run_seconds,
        "chunk_size": chunk_size, "resumed_from": restored[0] if restored is not None else None,
        "compile_cache_hits": hits_after[0] - hits_before[0], "compile_cache_misses": hits_after[1] - hits_before[1],
        "shard": layout.mode, "num_devices": layout.num_devices, "padded_runs": layout.padded_runs,
    }
    return Fitted(layout.unpad(state), metrics, report)


def evaluation_keys(seed: int, seeds: int, num_settings: int = 1):
    """The evaluation keys of `num_settings * seeds` runs (setting-major): run i gets
    `split(key(seed + 1), seeds)[i % seeds]`, so a seed meets the same episodes in every setting
    and in `jaxpg train`, `jaxpg eval` and `jaxpg sweep` alike."""
    return jnp.concatenate([jax.random.split(jax.random.key(seed + 1), seeds)] * num_settings)


def evaluate_runs(trainer, state, seed: int, seeds: int, episodes: int, env_params=None, deterministic=True):
    """Evaluation returns `(R, episodes)` of a batch of runs, under the one protocol every
    command reports: `evaluation_keys`, deterministic actions (sampled ones where a preset's
    criterion says so: `deterministic=False`), the horizon of `trainer.env_params`
    (`jaxpg.evaluate`'s default) and the environment parameters passed in as an argument, never
    closed over.

    Args:
      trainer, state: the trainer and its batched `TrainState` (`R` runs, setting-major).
      seed, seeds: the base seed and seeds per setting (`R` a multiple of `seeds`).
      episodes: episodes per run.
      env_params: the runs' environment parameters, shared (like `trainer.env_params`) or with
        a leading `R` axis; default the trainer's. Each run's episodes end at its own limit.
    """
    num_runs = int(np.shape(state.iteration)[0])
    keys = evaluation_keys(seed, seeds, num_runs // seeds)
    env_params, env_axis = _env_axes(trainer, env_params, num_runs)
    pending = trainer.__dict__.pop("_evaluation_compiling", None)
    if pending is not None:
        pending.exception()  # compiling this very program, most likely: wait rather than compile it twice
    program = _evaluation_program(trainer, episodes, env_axis, deterministic)
    return np.asarray(program(state, keys, env_params))


def _evaluation_program(trainer, episodes: int, env_axis, deterministic: bool):
    """`evaluate_runs`'s jitted program, one per trainer and protocol, so that a compile started
    ahead (`compile_evaluation`) is the one its call finds in JAX's cache."""
    programs = trainer.__dict__.setdefault("_evaluation_programs", {})
    signature = (episodes, env_axis, deterministic)
    if signature not in programs:
        def evaluation(state, key, env_params):
            return evaluate(trainer, state, key, episodes, deterministic=deterministic, env_params=env_params)

        programs[signature] = jax.jit(jax.vmap(evaluation, in_axes=(0, 0, env_axis)))
    return programs[signature]


def beside(fn, *args, name: str) -> Future:
    """Starts `fn(*args)` in a daemon thread (one that never holds up the process's exit) and
    returns the future of its result: work that overlaps training instead of following it."""
    future = Future()

    def work():
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # noqa: BLE001 - handed to whoever asks the future
            future.set_exception(error)

    threading.Thread(target=work, daemon=True, name=name).start()
    return future


def compile_evaluation(trainer, keys, seed: int, episodes: int, hparams=None, env_params=None,
                       deterministic=True) -> Future:
    """Starts compiling, in a thread, the program `evaluate_runs` will run on the host copy of
    what `fit(trainer, keys, hparams, env_params)` returns, and returns its future
    (`evaluate_runs` waits for it).

    The evaluation program compiles beside the training programs instead of after them: on 2
    cores that takes its 2-3 s off the time from training's end to the result (PPO on CartPole,
    `benchmarks/latency.py`). It changes nothing else: `evaluate_runs` calls the same program,
    compiled the same way, and one whose inputs turn out different simply compiles again.
    """
    num_runs = keys.shape[0]
    run_hparams, hparam_axes = _run_hparams(trainer, hparams, num_runs)
    env_params, env_axis = _env_axes(trainer, env_params, num_runs)
    eval_keys = evaluation_keys(seed, num_runs)
    program = _evaluation_program(trainer, episodes, env_axis, deterministic)

    def compile_it():  # tracing too: Python runs here while the main thread waits on XLA
        like = jax.eval_shape(jax.vmap(trainer._init, in_axes=(0, hparam_axes, env_axis)), keys, run_hparams,
                              env_params)
        # The host copy `evaluate_runs` receives has no weak types and no device placement.
        like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
        program.lower(like, eval_keys, env_params).compile()
        # A failure stays in the future: the call in `evaluate_runs` compiles again and reports it.

    future = beside(compile_it, name="compile-evaluation")
    trainer.__dict__["_evaluation_compiling"] = future
    return future


def _emit(chunk, iterations, metrics_every, total, writer, sinks, in_memory):
    """Keeps every `metrics_every`-th iteration (and the last) and hands it to files and sinks."""
    keep = ((iterations + 1) % metrics_every == 0) | (iterations == total - 1)
    if not keep.any():
        return
    chunk = {k: np.asarray(v)[:, keep] for k, v in chunk.items()}
    if writer is not None:
        writer.append(chunk, iterations[keep])
    else:
        in_memory.append(chunk)
    for sink in sinks:
        sink.write(chunk, iterations[keep])


def _collect(writer, out, in_memory):
    if writer is not None:
        return metrics_files.write_npz(out) if writer.rows() else {}
    if not in_memory:
        return {}
    return {k: np.concatenate([c[k] for c in in_memory], axis=1) for k in in_memory[0]}


def _same(a, b) -> bool:
    """Equal as JSON values, NaN equal to NaN (an unset hyperparameter that follows another)."""
    if a is None or b is None:
        return a is b
    return np.array_equal(np.asarray(a, float), np.asarray(b, float), equal_nan=True)


def _check_same_run(saved, config, hparams, keys, allow_changes):
    """Refuses to resume a run with another config, hyperparameters or keys, naming what differs."""
    differing = [k for k in sorted(set(saved["config"]) | set(config))
                 if saved["config"].get(k) != config.get(k) and k not in allow_changes]
    differing += [f"hparams.{k}" for k in sorted(set(saved["hparams"]) | set(hparams))
                  if not _same(saved["hparams"].get(k), hparams.get(k)) and k not in allow_changes]
    if saved["initial_keys"] != np.asarray(jax.random.key_data(keys)).tolist():
        differing.append("keys (seeds)")
    if differing:
        detail = "; ".join(
            f"{k}: saved {saved['config'].get(k)!r}, now {config.get(k)!r}"
            if k in config or k in saved["config"] else k
            for k in differing
        )
        raise ValueError(
            f"cannot resume: the run differs from the checkpoint in {detail}. Pass the same options, or allow "
            "the change (CLI: --override, e.g. --override total_timesteps=2000000)"
        )

