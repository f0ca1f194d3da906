# Targeting (docs/targeting.md). `make bench-targeting` loads 12 million synthetic subscribers
# once (kept in var/bench/targeting-pg) and writes bench/results/targeting.json.
# A quicker run: make bench-targeting BENCH_TARGETING_ARGS='--subscribers 200000'
.PHONY: bench-targeting

bench-targeting: setup
	$(PY) -m bench.targeting $(BENCH_TARGETING_ARGS)
