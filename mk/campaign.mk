# Campaign benchmark (docs/loadtest.md): one alert to a synthetic zone over SMS through the whole
# path; figures in bench/results/campaign.json (and campaign_<limit>.json; TLS=off and CPU_HOG=N
# runs write beside them with _plaintext and _cpu_hog<N> in the name).
#   make bench-campaign                        # default limiter (740.7/s, paced at 733.3), 20,000
#   make bench-campaign RECIPIENTS=40000 RATE=1482   # scaled: rate and zone up by the same factor
#   make bench-campaign LIMIT=open             # limiter opened wide, 100,000 recipients
#   make bench-campaign CPU_HOG=2              # two busy loops on the same cores meanwhile
LIMIT ?= default
RECIPIENTS ?=
RATE ?=
CPU_HOG ?=

.PHONY: bench-campaign

bench-campaign: setup
	$(PY) -m loadtest.campaign --limit $(LIMIT) $(if $(RECIPIENTS),--recipients $(RECIPIENTS)) \
		$(if $(RATE),--rate $(RATE)) $(if $(CPU_HOG),--cpu-hog $(CPU_HOG)) --tls $(TLS)
