# Cell broadcast (docs/cellbroadcast.md): M alerts to 3 simulated operators' CBCs, one down for
# the whole run; figures in bench/results/cellbroadcast.json.
#   make bench-cellbroadcast            200 alerts
#   make bench-cellbroadcast M=20       a quick run
M ?= 200
.PHONY: bench-cellbroadcast
bench-cellbroadcast: setup
	$(PY) -m bench.cellbroadcast --alerts $(M)
