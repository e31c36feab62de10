"""`jaxpg`: the command line (`jaxpg train ENV ...`, `resume`, `eval`, `plot`; `jaxpg.cli.commands`).

A multi-process job (`--coordinator HOST:PORT --num-processes N --process-id I`) must be joined
before anything starts a JAX backend, and importing gymnax does (it builds arrays at import), so
this entry point joins it first and only then imports the commands.
"""

import argparse
import sys

import jax


def join_job(argv) -> None:
    """`jax.distributed.initialize` from `--coordinator`, `--num-processes` and `--process-id`
    when they are given (all three, or none); CPU processes exchange data through gloo."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args, _ = parser.parse_known_args(argv)
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if not any(given):
        return
    if not all(given):
        raise ValueError("--coordinator, --num-processes and --process-id go together (one job, N processes)")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"--process-id={args.process_id} must be in [0, {args.num_processes}) and "
                         f"--num-processes={args.num_processes} at least 1")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        join_job(argv)
    except ValueError as error:
        print(f"jaxpg: error: {error}", file=sys.stderr)
        return 2
    from jaxpg.cli import commands

    return commands.main(argv)
