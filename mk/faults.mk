# Fault-injection benchmark (docs/faults.md): an SMS campaign through the stack while faults are
# injected one after another; figures in bench/results/faults.json (faults_channels.json when
# only the on-demand channel faults run).
#   make bench-faults                     # 400,000 SMS (the campaign lasts every fault), 60 s faults
#   make bench-faults FAULTS_N=20000 FAULT_S=5   # a short run
#   make bench-faults FAULTS="redis_lost"        # chosen faults (bench/faults.py FAULTS)
#   make bench-faults FAULTS="email_kill9 voice_kill9 cellbroadcast_kill9"  # the e-mail, voice and
#                                        # cell broadcast processes killed mid-alert (not default)
#   make bench-faults FAULTS_CPU_HOG=4           # busy loops of the cpu_hog fault (default: one per core)
#   make bench-faults FAULTS_CAMPAIGN=alert      # the campaign as an alert; redis_lost joins the run
FAULTS_N ?=
FAULT_S ?=
FAULTS ?=
FAULTS_CPU_HOG ?=
FAULTS_CAMPAIGN ?=

.PHONY: bench-faults

bench-faults: setup
	$(PY) -m bench.faults $(if $(FAULTS_N),--n $(FAULTS_N)) $(if $(FAULT_S),--fault-s $(FAULT_S)) \
		$(if $(FAULTS),--faults $(FAULTS)) $(if $(FAULTS_CPU_HOG),--cpu-hog $(FAULTS_CPU_HOG)) \
		$(if $(FAULTS_CAMPAIGN),--campaign $(FAULTS_CAMPAIGN))
