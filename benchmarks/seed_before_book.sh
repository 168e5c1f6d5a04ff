#!/usr/bin/env bash
# seed's throughput against the engine before the price book, like for like (issue 26):
# the same databases, the same command, the two installs run alternately.
#
#   git archive dd55c98 | (mkdir -p /tmp/old && tar -x -C /tmp/old)
#   (cd /tmp/old && python3 -m venv .venv && .venv/bin/pip install -q .)
#   OLD=/tmp/old/.venv/bin/bulk-backfill bash benchmarks/seed_before_book.sh DB...
#
# Each DB is a database name on the local server, built by the commands (init-db,
# demo-data --killmails 300000 [--days 60]); every killmail is valued in each run
# (--mode all). ROUNDS (default 3) rounds; prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${OLD:?set OLD to the old install of bulk-backfill}
NEW=${NEW:-.venv/bin/bulk-backfill}
SERVER=${SERVER:-postgresql://postgres@127.0.0.1:5432}
for db in "$@"; do
    export DATABASE_URL="$SERVER/$db"
    for round in $(seq "${ROUNDS:-3}"); do
        for engine in numpy sql; do
            for which in old new; do
                if [ "$which" = old ]; then bin=$OLD; else bin=$NEW; fi
                rate=$("$bin" run --mode all --procs 2 --rules seed --engine "$engine" 2>&1 |
                    grep -o '[0-9,]* killmails/s')
                echo "$db round $round $engine $which $rate"
            done
        done
    done
done
