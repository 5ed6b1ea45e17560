#!/usr/bin/env python3
"""measure.py --detect-cmd adapter for the HIS Sentinel store (W1 bench).

    w1_detect.py STORE.db

Prints "<endpoint index> <epoch s>" for the first failed result (status > 0) stored for each
flipped endpoint (env FLIP_EPS, checks named ep-<i>) at or after the flip (env FLIP_T0, epoch
seconds). The time printed is the result's `ts`, i.e. when the probe run started. Read-only;
prints nothing if the store does not exist yet.
"""

import os
import sqlite3
import sys


def main() -> int:
    db = sys.argv[1]
    t0 = float(os.environ["FLIP_T0"])
    eps = [int(x) for x in os.environ.get("FLIP_EPS", "").split(",") if x.strip()]
    if not eps or not os.path.exists(db):
        return 0
    names = [f"ep-{e}" for e in eps]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT c.name, MIN(r.ts) FROM results r JOIN checks c ON c.id = r.check_id "
            f"WHERE c.name IN ({','.join('?' * len(names))}) AND r.status > 0 AND r.ts >= ? "
            "GROUP BY c.name",
            [*names, int(t0 * 1000)],
        ).fetchall()
    except sqlite3.Error:
        return 0  # store still being created: try again at the next poll
    finally:
        con.close()
    for name, ts in sorted(rows):
        print(name[3:], f"{ts / 1000:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
