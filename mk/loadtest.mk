# Load test (docs/loadtest.md): a stack of its own on shifted ports, seeded, driven by Locust
# headless in three phases (mix: the target's measure; steady: every kind of user under capacity;
# full: every kind of user past it); CSV and HTML
# reports in bench/results/loadtest*, figures in bench/results/loadtest.json.
# Knobs: LOADTEST_TIME (60s per phase), LOADTEST_PHASES (mix,steady,full), LOADTEST_STEADY_RATE
# (calls/s offered by all users of the steady phase, 500), LOADTEST_MIX_USERS (8),
# LOADTEST_USERS (70), LOADTEST_SPAWN_RATE (20), LOADTEST_USER_RATE (calls/s per user of the full
# phase, 20; 0 = no wait), LOADTEST_PROCESSES (Locust processes, 1; -1 = one per CPU),
# LOADTEST_ALERTING_PROCESSES (1).
LOADTEST_TIME ?= 60s
LOADTEST_PHASES ?= mix,steady,full
LOADTEST_STEADY_RATE ?= 500
LOADTEST_MIX_USERS ?= 8
LOADTEST_USERS ?= 70
LOADTEST_SPAWN_RATE ?= 20
LOADTEST_USER_RATE ?= 20
LOADTEST_PROCESSES ?= 1
LOADTEST_ALERTING_PROCESSES ?= 1

.PHONY: loadtest

loadtest: setup
	$(PY) -m loadtest.run --time $(LOADTEST_TIME) --phases $(LOADTEST_PHASES) \
		--mix-users $(LOADTEST_MIX_USERS) --users $(LOADTEST_USERS) \
		--spawn-rate $(LOADTEST_SPAWN_RATE) --user-rate $(LOADTEST_USER_RATE) \
		--steady-rate $(LOADTEST_STEADY_RATE) \
		--processes $(LOADTEST_PROCESSES) --alerting-processes $(LOADTEST_ALERTING_PROCESSES) \
		--tls $(TLS)
