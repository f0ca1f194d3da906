# PostgreSQL's CPU per recipient for the channel recorder's statements replayed alone
# (bench/recorder.py, docs/sms.md); figures in bench/results/recorder.json.
#   make bench-recorder                       100,000 recipients, batches of 200
#   make bench-recorder RECORDER_ARGS='--fillfactor 70'
RECORDER_ARGS ?=
.PHONY: bench-recorder
bench-recorder: setup
	$(PY) -m bench.recorder $(RECORDER_ARGS)
