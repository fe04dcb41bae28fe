"""Benchmark `policyeval respond` against the bare AsyncOpenAI floor: requests/s and peak RSS.

An OpenAI-compatible server (`FastFakeOpenAIServer`: asyncio, a timer per reply) that
answers every request after a fixed delay runs in a process of its own, so the client
side is what is measured. Both contenders run as whole commands (start-up, reading the
items and writing the output included), against the same server in the same run:

  respond  `policyeval respond --items N.jsonl --concurrency C --no-cache --out ...`
  cached   the same with a fresh `--cache` folder: every answer committed to SQLite
  bare     a small script: the same N calls with `openai.AsyncOpenAI` under
           asyncio.Semaphore(C), items read with json.loads, answers kept in a list

For each: wall seconds, requests/s over the whole command (N / wall), and peak RSS from
the process's own rusage. The server's CPU per request is measured too, from its
/proc counters: if it were busy most of a core, the table would measure the server.

Targets (issue "100,000 items at the speed of the wire"): respond >= 1,000 requests/s
on 100,000 items at concurrency 256 with a 10 ms server; peak RSS < 400 MB; the same
peak at 10k and 100k items (flat); throughput holding or rising with concurrency.

    python bench/respond_bench.py             # 10k items x C in 32..512, 100k at C=256 (about 7 minutes)
    python bench/respond_bench.py --quick     # 2k items at C=32 and 256 (about a minute)
    python bench/respond_bench.py --bare-big  # the bare floor on 100k items too (about 9 minutes more)
    python bench/respond_bench.py --big-all   # 100k items at every concurrency
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE_SCRIPT = r'''
import asyncio, json, sys
import openai

async def main(path, base_url, concurrency):
    with open(path, encoding="utf-8") as handle:
        items = [json.loads(line) for line in handle if line.strip()]
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    slots = asyncio.Semaphore(concurrency)

    async def one(item):
        async with slots:
            reply = await client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": item["prompt"]}], max_tokens=32
            )
            return reply.choices[0].message.content

    answers = await asyncio.gather(*(one(item) for item in items))
    await client.close()
    assert len(answers) == len(items) and all(answers)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
'''


@dataclass
class Result:
    contender: str
    items: int
    concurrency: int
    wall_s: float
    peak_mib: int
    inner_s: float | None  # respond's own "run + write" time, from its summary line
    server_us: float | None  # server CPU microseconds per request during the run

    @property
    def rate(self) -> float:
        return self.items / self.wall_s


# ---------------------------------------------------------------------------
# The server process


def start_server(delay_s: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", "from policyeval.testing.openai_server import main; main()", "--delay", str(delay_s)],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    line = process.stdout.readline() if process.stdout else ""
    match = re.match(r"PORT (\d+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return process, f"http://127.0.0.1:{match.group(1)}/v1"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# Measuring commands


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("POLICYEVAL_CACHE_DIR", None)
    return env


def run_measured(command: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one command, from its own rusage (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=_env(), stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(command)}\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss // 1024, stdout  # Linux reports ru_maxrss in KiB


def write_items(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": f"b{i:06d}", "prompt": f"Benchmark prompt number {i}: say something short."}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000, help="items per run in the concurrency sweep")
    parser.add_argument("--big", type=int, default=100_000, help="items for the large runs (0 skips them)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--big-concurrency", type=int, nargs="+", default=[256])
    parser.add_argument("--big-all", action="store_true", help="large runs at every concurrency of the sweep")
    parser.add_argument("--bare-big", action="store_true", help="the bare floor on the large runs too (about 9 minutes each)")
    parser.add_argument("--delay", type=float, default=0.01, help="server reply delay, seconds")
    parser.add_argument("--quick", action="store_true", help="2k items at concurrency 32 and 256, no large runs")
    args = parser.parse_args()
    if args.quick:
        args.items, args.big, args.concurrency = 2000, 0, [32, 256]
    big_concurrency = args.concurrency if args.big_all else args.big_concurrency

    server, base_url = start_server(args.delay)
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="respond-bench-") as tmp:
            tmp_path = Path(tmp)
            bare = tmp_path / "bare.py"
            bare.write_text(BARE_SCRIPT, encoding="utf-8")
            files: dict[int, Path] = {}

            def items_file(n: int) -> Path:
                if n not in files:
                    files[n] = write_items(tmp_path / f"items-{n}.jsonl", n)
                return files[n]

            def measure(contender: str, n: int, c: int) -> Result:
                if contender in ("respond", "cached"):
                    cache = ["--no-cache"] if contender == "respond" else ["--cache", str(tmp_path / f"cache-{n}-{c}")]
                    command = [
                        sys.executable, "-m", "policyeval", "respond", "--items", str(items_file(n)),
                        "--base-url", base_url, "--model", "fake-model", "--param", "max_tokens=32",
                        "--concurrency", str(c), *cache, "--out", str(tmp_path / "out.parquet"),
                    ]
                else:
                    command = [sys.executable, str(bare), str(items_file(n)), base_url, str(c)]
                cpu_before = cpu_seconds(server.pid)
                wall, peak, out = run_measured(command)
                server_us = (cpu_seconds(server.pid) - cpu_before) / n * 1e6
                found = re.search(r", ([\d.]+)s -> ", out)
                result = Result(contender, n, c, wall, peak, float(found.group(1)) if found else None, server_us)
                results.append(result)
                print(f"  {contender:8s} {n:>7,} items  C={c:<4d} {wall:7.2f}s  {result.rate:7.0f} req/s  "
                      f"peak {peak:4d} MiB  server {server_us:5.0f} us/req", flush=True)
                return result

            print(f"server: {base_url}, {args.delay * 1000:.0f} ms per reply (FastFakeOpenAIServer, own process)")
            run_measured([sys.executable, "-m", "policyeval", "--help"])  # warm bytecode caches
            for c in args.concurrency:
                measure("respond", args.items, c)
                measure("cached", args.items, c)
                measure("bare", args.items, c)
            if args.big:
                for c in big_concurrency:
                    measure("respond", args.big, c)
                    measure("cached", args.big, c)
                    if args.bare_big:
                        measure("bare", args.big, c)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print_table(results, args.delay)


def print_table(results: list[Result], delay_s: float) -> None:
    def cell(contender: str, n: int, c: int) -> Result | None:
        return next((r for r in results if r.contender == contender and (r.items, r.concurrency) == (n, c)), None)

    print()
    print(f"requests/s over the whole command (N / wall) and peak RSS in MiB, {delay_s * 1000:.0f} ms server")
    header = (f"{'items':>8} {'C':>4} | {'respond':>7} {'peak':>5} | {'cached':>7} {'peak':>5} | "
              f"{'bare':>6} {'peak':>5} | {'respond/bare':>12} | {'ideal':>6}")
    print(header)
    print("-" * len(header))
    for n, c in sorted({(r.items, r.concurrency) for r in results}):
        respond, cached, bare = cell("respond", n, c), cell("cached", n, c), cell("bare", n, c)
        cells = [
            f"{n:>8,} {c:>4}",
            f"{respond.rate:>7.0f} {respond.peak_mib:>5}" if respond else f"{'-':>7} {'-':>5}",
            f"{cached.rate:>7.0f} {cached.peak_mib:>5}" if cached else f"{'-':>7} {'-':>5}",
            f"{bare.rate:>6.0f} {bare.peak_mib:>5}" if bare else f"{'-':>6} {'-':>5}",
            f"{respond.rate / bare.rate:>11.1f}x" if respond and bare else f"{'-':>12}",
            f"{c / delay_s:>6.0f}",
        ]
        print(" | ".join(cells))
    print("respond: --no-cache; cached: a fresh --cache (every answer committed); bare: AsyncOpenAI + Semaphore;")
    print("ideal = C / delay, the rate if the client cost nothing")
    busiest = max((r for r in results if r.server_us), key=lambda r: r.server_us * r.rate, default=None)
    if busiest is not None:
        share = busiest.server_us * busiest.rate / 1e6
        print(f"server: busiest at {share:.0%} of one core ({busiest.rate:,.0f} req/s, {busiest.server_us:.0f} us CPU "
              f"per request): it answers about {busiest.rate / max(share, 1e-9):,.0f} req/s before it is the limit")
    for r in results:
        if r.contender in ("respond", "cached") and r.items >= 100_000 and r.concurrency == 256:
            verdict = "OK" if r.rate >= 1000 and r.peak_mib < 400 else "BELOW TARGET"
            print(f"target, {r.contender} 100k items at C=256 (>= 1,000 req/s, < 400 MB): "
                  f"{r.rate:,.0f} req/s, {r.peak_mib} MiB -> {verdict}")
    respond = [r for r in results if r.contender == "respond"]
    sizes = sorted({r.items for r in respond})
    if len(sizes) > 1:
        small = max(r.peak_mib for r in respond if r.items == sizes[0])
        large = max(r.peak_mib for r in respond if r.items == sizes[-1])
        print(f"memory: respond peaks at {small} MiB on {sizes[0]:,} items, {large} MiB on {sizes[-1]:,} "
              f"({large / small:.2f}x; flat is ~1x)")


if __name__ == "__main__":
    main()
