# SMPP: the interoperability peer (npm `smpp` in server mode) and the SMSC simulator.
SMPP_PEER := tests/gateways/smpp/peer

.PHONY: smpp-peer smsc-sim

# `npm ci` once per lock file; the stamp lives in node_modules so a fresh clone installs again.
smpp-peer: $(SMPP_PEER)/node_modules/.stamp-npm-ci
$(SMPP_PEER)/node_modules/.stamp-npm-ci: $(SMPP_PEER)/package.json $(SMPP_PEER)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the SMPP interoperability test needs Node.js 20 with npm" >&2; exit 1; }
	cd $(SMPP_PEER) && npm ci --no-audit --no-fund
	touch $@

# The interoperability test needs the peer installed.
pytest: smpp-peer

# A simulated SMSC for proximus (stack/operators.toml) on 127.0.0.1:2775 until Ctrl-C (more
# flags with SMSC_ARGS).
smsc-sim: setup
	$(PY) -m simulators.smsc --port 2775 --name proximus $(SMSC_ARGS)
