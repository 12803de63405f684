#!/usr/bin/env bash
# A hash of everything R CMD INSTALL builds the package from (the files R CMD build
# would ship, minus tests and build products), so `make` reinstalls only when one of
# them changed.
set -euo pipefail
cd "$(dirname "$0")/.."
find DESCRIPTION NAMESPACE R src inst man vignettes -type f \
  -not -path 'src/rust/target/*' -not -path 'src/rust/vendor/*' \
  -not -path 'inst/doc/*' -not -name '*.o' -not -name '*.so' -not -name '*.a' -not -name '*.html' -print0 |
  LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1
