import os

# Tests run on the CPU with two cores; keep XLA from oversubscribing them.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
