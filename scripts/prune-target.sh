#!/usr/bin/env bash
# Keeps the shared cargo target dir from filling the disk. Cargo never removes
# the artifacts of superseded builds: every change to the dependency graph or
# to a crate's features leaves another few hundred MB of test binaries and
# rlibs behind. When a profile's deps/ grows past LIMIT_GB (default 15), this
# removes all but the 4 newest of each big artifact (over 50 MB: benchrun's
# rlibs and test binaries; the name without its hash, with its extension; at
# most two of each are current). Small dependency artifacts stay: a crate can
# have more than 4 current builds (check and build, test and non-test
# features, host and target) and removing one would only make it rebuild.
# Whatever this removes, cargo rebuilds when needed.
# Usage: scripts/prune-target.sh [LIMIT_GB]   (scripts/test.sh runs it first)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
limit_gb="${1:-15}"
for deps in "$CARGO_TARGET_DIR"/debug/deps "$CARGO_TARGET_DIR"/release/deps; do
  [ -d "$deps" ] || continue
  size_gb="$(du -s --block-size=1G "$deps" | cut -f1)"
  [ "$size_gb" -gt "$limit_gb" ] || continue
  echo "== pruning $deps (${size_gb} GB): the 4 newest of each big artifact stay"
  # Newest first; "stem<TAB>file" where stem is the name without its -<hash>.
  find "$deps" -maxdepth 1 -type f -size +50M -printf '%T@\t%f\n' | sort -rn | cut -f2 |
    sed -E 'h; s/-[0-9a-f]{16}//; G; s/\n/\t/' |
    awk -F '\t' '++seen[$1] > 4 { print $2 }' |
    (cd "$deps" && xargs -r rm -rf --)
  echo "   now $(du -sh "$deps" | cut -f1)"
done
