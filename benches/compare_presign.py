#!/usr/bin/env python3
"""Presign cost side by side, in one run on this machine (BENCHMARKS.md, figure 1).

  weights-watcher  `cargo bench --bench presign` (criterion medians, one core)
  boto3            `generate_presigned_url('get_object')` per call, client built once, clock frozen
  AWS CLI          `aws s3 presign` as one process per URL (what the platform did before)

Same key, credentials, region, endpoint (path style) and TTL as benches/presign.rs; boto3's clock is
frozen at the same instant and its URL is checked against ours. The CLI cannot have its clock
frozen (a fresh process each time), so its URL differs only in X-Amz-Date and the signature.

Needs `pip install boto3 awscli`. Usage: python3 benches/compare_presign.py [--skip-cargo]
"""

import datetime
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import parse_qsl, urlsplit

ENDPOINT = "http://127.0.0.1:9000"
BUCKET = "akave-bucket"
REGION = "akave-network"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY = "f402e7c3b1d6a95e8f0c2b4d6e8a0c1e3f5a7b9d1c3e5f7a9b1d3f5e7c9a1b3d"
NOW = datetime.datetime(2025, 12, 4, 12, 0, 0)
TTL = 3600
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def criterion_medians():
    """{function id: median ns} of the presign group."""
    out = {}
    for path in glob.glob(os.path.join(REPO, "target/criterion/presign/*/new/benchmark.json")):
        with open(path) as f:
            name = json.load(f)["function_id"]
        with open(os.path.join(os.path.dirname(path), "estimates.json")) as f:
            out[name] = json.load(f)["median"]["point_estimate"]
    return out


def normalised(url):
    parts = urlsplit(url)
    return parts.scheme, parts.netloc, parts.path, sorted(parse_qsl(parts.query))


def our_url():
    """The URL presign_at makes for the shared inputs (printed by the bench)."""
    run = subprocess.run(
        ["cargo", "bench", "--bench", "presign", "--", "--test"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    for line in run.stderr.splitlines():
        if line.startswith("presign_at URL: "):
            return line.split(": ", 1)[1].strip()
    return None


def boto3_bench():
    import boto3
    import botocore.auth
    from botocore.config import Config

    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: NOW
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def one():
        return client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=TTL)

    url = one()
    for _ in range(2000):  # warm-up
        one()
    per_call = []
    for _ in range(7):
        n = 5000
        t = time.perf_counter()
        for _ in range(n):
            one()
        per_call.append((time.perf_counter() - t) / n)
    return statistics.median(per_call), url


def cli_bench(runs):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
    cfg.write(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n")
    cfg.close()
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE=cfg.name,
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
    )
    cmd = ["aws", "s3", "presign", f"s3://{BUCKET}/{KEY}", "--expires-in", str(TTL), "--endpoint-url", ENDPOINT]
    # pyenv shims add a bash + pyenv exec hop; call the real entry point like an installed CLI would.
    real = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True)
    if real.returncode == 0 and real.stdout.strip():
        cmd[0] = real.stdout.strip()
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm the page cache
    times, url = [], None
    for _ in range(runs):
        t = time.perf_counter()
        url = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()
        times.append(time.perf_counter() - t)
    # Peak RSS of one CLI process, from /usr/bin/time (RUSAGE_CHILDREN would include cargo).
    timed = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, env=env, capture_output=True, text=True)
    rss_mib = int(timed.stderr.strip().splitlines()[-1]) / 1024 if timed.returncode == 0 else float("nan")
    os.unlink(cfg.name)
    return statistics.median(times), url, rss_mib


def main():
    if "--skip-cargo" not in sys.argv:
        subprocess.run(["cargo", "bench", "--bench", "presign"], cwd=REPO, check=True)
    medians = criterion_medians()
    ours_url = our_url()
    boto_s, boto_url = boto3_bench()
    cli_s, cli_url, cli_rss = cli_bench(runs=int(os.environ.get("CLI_RUNS", "15")))

    same = ours_url is not None and normalised(ours_url) == normalised(boto_url)
    print()
    print(f"boto3 URL == presign_at URL (same clock, params sorted): {same}")
    if not same:
        print(f"  ours:  {ours_url}\n  boto3: {boto_url}")
    cli_base = normalised(cli_url)
    print(f"AWS CLI URL path and parameter names match: "
          f"{cli_base[:3] == normalised(boto_url)[:3] and [k for k, _ in cli_base[3]] == [k for k, _ in normalised(boto_url)[3]]}")
    print()
    rows = [(name, ns / 1e9) for name, ns in sorted(medians.items(), key=lambda kv: kv[1])]
    rows += [("boto3 generate_presigned_url (per call)", boto_s), ("aws s3 presign (one process per URL)", cli_s)]
    hot = medians.get("presign_at (hot path)")
    print(f"{'implementation':58} {'median':>12} {'per core/s':>12} {'vs presign_at':>14}")
    for name, secs in rows:
        ratio = f"{secs / (hot / 1e9):,.1f}x" if hot else "-"
        print(f"{name:58} {fmt(secs):>12} {1 / secs:>12,.0f} {ratio:>14}")
    print(f"\nAWS CLI peak RSS per process: {cli_rss:.0f} MiB")


def fmt(secs):
    if secs >= 1e-3:
        return f"{secs * 1e3:.1f} ms"
    if secs >= 1e-6:
        return f"{secs * 1e6:.2f} us"
    return f"{secs * 1e9:.0f} ns"


if __name__ == "__main__":
    main()
