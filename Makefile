# The two commands: `make demo` and `make test`. Both install what is missing
# (Debian packages only), build and install the package, then do their job.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

DEB_PACKAGES = r-base-dev r-cran-lme4 r-cran-lmertest r-cran-nlme r-cran-pbkrtest \
               r-cran-testthat r-cran-knitr r-cran-rmarkdown r-cran-emmeans pandoc

.PHONY: setup deps install demo test cargo-test r-test bench fuzz

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

install:
	R CMD INSTALL --no-multiarch .

demo: setup
	Rscript inst/workshop/demo.R

cargo-test:
	cd src/rust && cargo test --release --workspace

r-test:
	Rscript tools/run-tests.R

test: setup cargo-test r-test

bench: setup
	Rscript bench/bench.R

# 10,000 random models and data sets, each fitted in child processes (inst/fuzz/fuzz.R)
fuzz: setup
	Rscript inst/fuzz/run.R 10000 2
