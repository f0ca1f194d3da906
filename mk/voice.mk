# Voice (docs/voice.md): SIPp as the independent SIP peer of the tests, the SIP trunk simulator,
# and the benchmark.
#   make bench-voice                        10,000 calls through a 1,000-channel simulated trunk
#   make bench-voice BENCH_VOICE_ARGS='--n 52304'   the 2019 national test's volume
.PHONY: sipp siptrunk-sim bench-voice

# Debian's sip-tester, installed when missing and we may (root, apt reachable; CI has no stdin).
# Best effort: where it cannot be installed, tests/gateways/sip/test_sipp.py skips and says so.
sipp:
	@command -v sipp >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q sip-tester >/dev/null 2>&1 \
			|| { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q sip-tester >/dev/null 2>&1; } \
			|| echo "sip-tester could not be installed: the SIPp tests will be skipped"; \
		else echo "sipp not found and not root with apt-get: the SIPp tests will be skipped"; fi; }

pytest: sipp

# A simulated SIP trunk on 127.0.0.1:5060 until Ctrl-C (pass more flags with SIPTRUNK_ARGS).
siptrunk-sim: setup
	$(PY) -m simulators.siptrunk --port 5060 $(SIPTRUNK_ARGS)

bench-voice: setup
	$(PY) -m bench.voice $(BENCH_VOICE_ARGS)
