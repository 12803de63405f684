# The two commands: `make demo` and `make test`. Both install what is missing
# (Debian packages only), build and install the package, then do their job.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

DEB_PACKAGES = r-base-dev r-cran-lme4 r-cran-lmertest r-cran-nlme r-cran-pbkrtest \
               r-cran-testthat r-cran-knitr r-cran-rmarkdown r-cran-emmeans pandoc \
               r-cran-broom.mixed r-cran-roxygen2 r-cran-png chromium xz-utils \
               r-cran-insight r-cran-performance r-cran-parameters r-cran-bayestestr \
               r-cran-ggeffects r-cran-car r-cran-effects r-cran-multcomp r-cran-sjplot \
               r-cran-mertools r-cran-mlmrev r-cran-minqa

.PHONY: setup deps install reinstall demo test cargo-test r-test check docs vendor bench fuzz

setup: deps install

deps:
	@command -v cargo >/dev/null 2>&1 || { \
	  echo "mixedrs needs Rust: 'cargo' is not on PATH (looked in PATH and ~/.cargo/bin)."; \
	  echo "Install rustc and cargo (for example with rustup), then run make again."; exit 1; }
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "All Debian packages present."; fi

# Build and install only when the sources changed: the installed package carries the
# hash of the sources it was built from (tools/source-hash.sh), and an install whose
# hash matches is kept. `make reinstall` forces it.
# An install that was killed (a stopped session, a cancelled CI job) leaves
# 00LOCK-<directory> in the library and every later install fails; remove it when
# no other R CMD INSTALL is running.
install:
	@lib=$$(Rscript -e 'cat(.libPaths()[1])'); \
	hash=$$(tools/source-hash.sh); \
	if [ -f "$$lib/mixedrs/source-hash" ] && [ "$$(cat "$$lib/mixedrs/source-hash")" = "$$hash" ]; then \
	  echo "mixedrs is installed from these sources already ($$lib); not rebuilding."; exit 0; fi; \
	for lock in "$$lib/00LOCK-$$(basename "$$PWD")" "$$lib/00LOCK-mixedrs"; do \
	  if [ -d "$$lock" ] && ! pgrep -f 'tools:::[.]install_packages' >/dev/null; then \
	    echo "Removing a stale install lock: $$lock"; rm -rf "$$lock"; fi; \
	done; \
	R CMD INSTALL --no-multiarch . && echo "$$hash" > "$$lib/mixedrs/source-hash"

reinstall:
	@lib=$$(Rscript -e 'cat(.libPaths()[1])'); rm -f "$$lib/mixedrs/source-hash"
	$(MAKE) install

# the workshop vignette and the performance vignette rendered to HTML, then the
# side-by-side tables on the console
demo: setup
	Rscript tools/render-vignettes.R demo-output
	Rscript inst/workshop/demo.R

cargo-test:
	cd src/rust && cargo test --release --workspace

r-test:
	Rscript tools/run-tests.R

# R CMD check of the built tarball; the testthat suite runs in r-test, against the
# installed package, so check skips it
check:
	rm -rf check && mkdir check
	cd check && R CMD build --no-manual .. && \
	  _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual --no-tests mixedrs_*.tar.gz; \
	status=$$?; cat mixedrs.Rcheck/00check.log | tail -5; \
	if grep -q "Status: .*\(ERROR\|WARNING\)" mixedrs.Rcheck/00check.log; then exit 1; fi; exit $$status

test: setup cargo-test r-test check

# Rd files from the roxygen comments (the NAMESPACE is written by hand); C collation,
# as in the test that checks man/ is current
docs:
	LC_COLLATE=C Rscript -e 'roxygen2::roxygenise(load_code = "source")'

vendor:
	bash tools/vendor.sh

bench: setup
	set -o pipefail; Rscript bench/bench.R 2>&1 | tee bench/last-run.txt
	set -o pipefail; Rscript bench/bench_glmm.R 2>&1 | tee bench/last-run-glmm.txt

# 10,000 random models and data sets, each fitted in child processes (inst/fuzz/fuzz.R)
fuzz: setup
	Rscript inst/fuzz/run.R 10000 2
