# SMS service (docs/sms.md): the end-to-end benchmark. Stream -> limiter (opened wide) -> SMSC ->
# receipts -> PostgreSQL; figures in bench/results/sms.json.
#   make bench-sms                      200,000 SMS against the SMSC simulators
#   make bench-sms N=2000000            the full run
#   make bench-sms SMSC=host:port       against another SMSC (one operator; its account from
#                                       TOCSIN_SMPP_SYSTEM_ID / TOCSIN_SMPP_PASSWORD)
#   make bench-sms BENCH_SMS_ARGS='--workers 2 --binds 2 --window 200'
N ?= 200000
# TLS=off runs the benchmarks (bench-sms, bench-campaign, loadtest) in plaintext, to quote what
# TLS costs; their figures then go to *_plaintext.json beside the TLS ones.
TLS ?= on
.PHONY: bench-sms
bench-sms: setup
	$(PY) -m bench.sms --n $(N) $(if $(SMSC),--smsc $(SMSC)) --tls $(TLS) $(BENCH_SMS_ARGS)
