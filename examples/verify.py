"""Ask the development KMS to inquire a service's batches of the last hour, and show the result.

python examples/verify.py --service TestService
"""

import argparse
import json
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta


def call(method: str, url: str, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="http://localhost:8081", help="devkms admin API")
    parser.add_argument("--service", default="TestService")
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    now = datetime.now(UTC)
    started = call(
        "POST",
        f"{args.admin}/inquiries",
        {
            "serviceName": args.service,
            "startTime": (now - timedelta(minutes=args.minutes)).isoformat(),
            "endTime": (now + timedelta(minutes=1)).isoformat(),
        },
    )
    deadline = time.monotonic() + 60
    while True:
        result = call("GET", f"{args.admin}/inquiries/{started['inquiry']}")
        if result["complete"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    bad = [batch for batch in result["batches"] if not batch["verified"]]
    print(
        f"inquiry {result['inquiry']}: {result['received']} of {result['total']} batches, "
        f"{len(result['rows'])} events; verified: {result['verified']}"
    )
    for batch in bad:
        print(f"  batch {batch['id']} NOT verified: {batch['errors'][:3]}")
    sys.exit(0 if result["verified"] else 1)


if __name__ == "__main__":
    main()
