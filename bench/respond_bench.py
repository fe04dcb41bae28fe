"""Benchmark `policyeval respond` against a bare AsyncOpenAI loop, and its peak memory.

An OpenAI-compatible server that answers every request after a fixed delay runs in a
separate process, so the client side is measured on its own. Both contenders run as
whole commands (start-up, reading items and writing output included):

  (a) `policyeval respond` on N items at concurrency C, --no-cache
  (b) a bare script: the same N calls with AsyncOpenAI under asyncio.Semaphore(C)

Target: (a) <= 1.5x (b). Then the peak RSS of `policyeval respond` on N and on
--big items; flat memory means the big run's peak is within ~1.5x of the small one's.

    python bench/respond_bench.py [--items 1000] [--big 20000] [--concurrency 64] [--delay 0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
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
    assert len(answers) == len(items)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
'''


# ---------------------------------------------------------------------------
# The server process


def serve(delay_s: float) -> None:
    """Run the fake server in this process until killed; print its port first."""
    sys.path.insert(0, str(REPO))
    from policyeval.testing.openai_server import FakeOpenAIServer, Reply, chat_completion_body

    body = chat_completion_body("A short benchmark answer.", prompt_tokens=12, completion_tokens=6)

    def handler(request: dict, index: int) -> Reply:
        return Reply(body=body, delay_s=delay_s)

    server = FakeOpenAIServer(handler)  # its handler disables Nagle itself: one segment per reply
    server.start()
    print(f"PORT {server.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


def start_server(delay_s: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--delay", str(delay_s)], stdout=subprocess.PIPE, text=True
    )
    line = process.stdout.readline() if process.stdout else ""
    match = re.match(r"PORT (\d+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return process, f"http://127.0.0.1:{match.group(1)}/v1"


# ---------------------------------------------------------------------------
# Measuring commands


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one command, from its own rusage (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
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
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--big", type=int, default=20000, help="item count for the memory comparison (0 skips it)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.1, help="server reply delay, seconds")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per contender (the median is compared)")
    args = parser.parse_args()
    if args.serve:
        serve(args.delay)
        return

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("POLICYEVAL_CACHE_DIR", None)
    server, base_url = start_server(args.delay)
    try:
        with tempfile.TemporaryDirectory(prefix="respond-bench-") as tmp:
            tmp_path = Path(tmp)
            small = write_items(tmp_path / "items-small.jsonl", args.items)
            bare = tmp_path / "bare.py"
            bare.write_text(BARE_SCRIPT, encoding="utf-8")

            def respond(items: Path) -> list[str]:
                return [
                    sys.executable, "-m", "policyeval", "respond", "--items", str(items), "--base-url", base_url,
                    "--model", "fake-model", "--param", "max_tokens=32", "--concurrency", str(args.concurrency),
                    "--no-cache", "--out", str(tmp_path / "out.parquet"),
                ]

            bare_cmd = [sys.executable, str(bare), str(small), base_url, str(args.concurrency)]
            ideal = args.items / args.concurrency * args.delay
            print(f"server: {base_url}, {args.delay * 1000:.0f} ms per reply; {args.items} items at concurrency "
                  f"{args.concurrency} (ideal network time {ideal:.2f}s)")
            run_measured(bare_cmd, env)  # warm caches (imports, bytecode) for both
            respond_times, bare_times, small_peaks, inner = [], [], [], []
            for _ in range(args.repeat):
                wall, peak, out = run_measured(respond(small), env)
                respond_times.append(wall)
                small_peaks.append(peak)
                found = re.search(r", ([\d.]+)s -> ", out)
                if found:
                    inner.append(float(found.group(1)))
                bare_times.append(run_measured(bare_cmd, env)[0])
            r, b = statistics.median(respond_times), statistics.median(bare_times)
            print(f"(a) policyeval respond: {r:.2f}s  (runs: {', '.join(f'{t:.2f}' for t in respond_times)}"
                  + (f"; run+write inside the command {statistics.median(inner):.2f}s" if inner else "") + ")")
            print(f"(b) bare AsyncOpenAI:   {b:.2f}s  (runs: {', '.join(f'{t:.2f}' for t in bare_times)})")
            print(f"ratio respond/bare: {r / b:.2f}x (target <= 1.5x) -> {'OK' if r / b <= 1.5 else 'SLOWER THAN TARGET'}")

            small_peak = max(small_peaks)
            print(f"peak RSS, respond on {args.items} items: {small_peak} MiB")
            if args.big:
                big = write_items(tmp_path / "items-big.jsonl", args.big)
                wall, big_peak, _ = run_measured(respond(big), env)
                ratio = big_peak / small_peak
                print(f"peak RSS, respond on {args.big} items: {big_peak} MiB ({wall:.1f}s wall); "
                      f"{ratio:.2f}x the {args.items}-item peak (flat: <= ~1.5x) -> {'OK' if ratio <= 1.5 else 'NOT FLAT'}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
