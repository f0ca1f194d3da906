# An emergency's first SMS while a test campaign is queued ahead of it (issue 16):
#   make bench-priority                          # 200,000 test SMS ahead
#   make bench-priority PRIORITY_N=5000          # a short run
PRIORITY_N ?= 200000

.PHONY: bench-priority

bench-priority: setup
	$(PY) -m bench.priority --n $(PRIORITY_N)
