# Public CAP feed (docs/capfeed.md): many screens polling, half conditionally; figures in
# bench/results/capfeed.json.
#   make bench-capfeed                                   200 clients, 20 s, 2 feed processes
#   make bench-capfeed BENCH_CAPFEED_ARGS='--clients 50 --duration 5'
.PHONY: bench-capfeed
bench-capfeed: setup
	$(PY) -m bench.capfeed $(BENCH_CAPFEED_ARGS)
