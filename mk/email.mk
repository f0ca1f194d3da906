# E-mail service (docs/email.md): the end-to-end benchmark. Stream -> e-mail service -> relay
# simulators -> PostgreSQL; figures in bench/results/email.json.
#   make bench-email                          200,000 e-mails
#   make bench-email EMAIL_N=980000           the national dispatch of 20 May 2022
#   make bench-email BENCH_EMAIL_ARGS='--workers 2 --connections 8'
EMAIL_N ?= 200000
.PHONY: bench-email
bench-email: setup
	$(PY) -m bench.email --n $(EMAIL_N) $(BENCH_EMAIL_ARGS)
