"""No server at all: evaluate from a ruleset file (the export format of `vexil export`).

    python offline_bootstrap.py ruleset.json flag-key
"""

from __future__ import annotations

import sys

import vexil


def main() -> None:
    ruleset, flag = sys.argv[1], sys.argv[2]
    with vexil.Client("vxl-server-offline", offline=True, bootstrap=ruleset) as client:
        for key in ("alice", "bob", "carol"):
            detail = client.variation_detail(flag, {"kind": "user", "key": key}, None,
                                             type="json")
            print(f"{key}: {detail.value!r} ({detail.reason_kind}, from {detail.source})")


if __name__ == "__main__":
    main()
