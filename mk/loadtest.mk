# Load test (docs/loadtest.md): a stack of its own on shifted ports, seeded, driven by Locust
# headless; CSV and HTML reports in bench/results/loadtest*, figures in bench/results/loadtest.json.
# Knobs: LOADTEST_TIME (60s), LOADTEST_USERS (70), LOADTEST_SPAWN_RATE (20),
# LOADTEST_USER_RATE (calls/s per user, 20; 0 = no wait), LOADTEST_PROCESSES (1; -1 = one per CPU).
LOADTEST_TIME ?= 60s
LOADTEST_USERS ?= 70
LOADTEST_SPAWN_RATE ?= 20
LOADTEST_USER_RATE ?= 20
LOADTEST_PROCESSES ?= 1

.PHONY: loadtest

loadtest: setup
	$(PY) -m loadtest.run --time $(LOADTEST_TIME) --users $(LOADTEST_USERS) \
		--spawn-rate $(LOADTEST_SPAWN_RATE) --user-rate $(LOADTEST_USER_RATE) \
		--processes $(LOADTEST_PROCESSES)
