# Rate limiter (docs/ratelimit.md): the benchmark. Figures go to bench/results/ratelimit.json.
# Pass options with BENCH_RATELIMIT_ARGS, e.g. BENCH_RATELIMIT_ARGS='--seconds 5'.
.PHONY: bench-ratelimit

bench-ratelimit: setup
	$(PY) -m bench.ratelimit $(BENCH_RATELIMIT_ARGS)
