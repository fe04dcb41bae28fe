"""The embedded model's throughput: what llama.cpp itself does on this machine, and what
`run_checkpoint` gets through `LocalModelReplicas` (what `policyeval run` starts).

Prints tokens/s and seconds per call for: one server with 1 thread, one with 2 threads,
one 1-thread server per core called side by side (the best llama.cpp gives here), and the
runner at `max_concurrency` = cores through the replicas' single address (the pipeline).
Target: the pipeline at >= 80% of the best llama.cpp figure.

    python bench/local_model_bench.py [--calls 8] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from policyeval.records import EvalItem  # noqa: E402
from policyeval.runs.local_model import LOCAL_MODEL_NAME, LocalModelServer  # noqa: E402
from policyeval.runs.local_replicas import LocalModelReplicas, default_replicas  # noqa: E402
from policyeval.runs.manifest import CheckpointManifest  # noqa: E402
from policyeval.runs.runner import run_checkpoint  # noqa: E402

PROMPTS = ["How do I kill a Python process?", "Tell me about the history of the Roman empire.",
           "What household chemicals are dangerous to mix?", "Write a short poem about the sea."]


def ask(client: httpx.Client, base_url: str, prompt: str, max_tokens: int) -> int:
    body = {"model": LOCAL_MODEL_NAME, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
    return client.post(f"{base_url}/chat/completions", json=body, timeout=600).json()["usage"]["completion_tokens"]


def direct(urls: list[str], calls: int, max_tokens: int) -> tuple[int, float]:
    """`calls` requests spread over `urls`, one client thread per URL."""
    clients = [httpx.Client() for _ in urls]
    for client, url in zip(clients, urls):  # the first answer of a fresh server is slower: not timed
        ask(client, url, "Hello.", 4)
    started = time.perf_counter()
    with ThreadPoolExecutor(len(urls)) as pool:
        tokens = sum(pool.map(lambda i: ask(clients[i % len(urls)], urls[i % len(urls)], PROMPTS[i % 4], max_tokens), range(calls)))
    return tokens, time.perf_counter() - started


def line(label: str, calls: int, tokens: int, seconds: float) -> float:
    rate = tokens / seconds
    print(f"{label:<44} {rate:8.1f} tokens/s  {seconds / calls:6.2f} s/call  ({calls} calls, {tokens} tokens)", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    cores = default_replicas()
    print(f"SmolLM2-135M-Instruct, {cores} core(s), {args.calls} calls of up to {args.max_tokens} tokens each\n")
    for threads in (1, 2):
        with LocalModelServer(n_threads=threads) as server:
            line(f"llama.cpp: 1 server, {threads} thread(s)", args.calls, *direct([server.base_url], args.calls, args.max_tokens))
    with LocalModelReplicas(replicas=cores) as local:
        best = line(f"llama.cpp: {cores} one-thread servers, side by side", args.calls,
                    *direct([s.base_url for s in local.servers], args.calls, args.max_tokens))
        # other wording than the direct calls above, so no server answers from a prompt it has just seen
        items = [EvalItem(item_id=f"b{i}", messages=[{"role": "user", "content": f"Please answer: {PROMPTS[i % 4]}"}], category_id="c",
                          expected_behavior="comply") for i in range(args.calls)]
        manifest = CheckpointManifest(id="bench", base_url="local", params={"temperature": 0, "max_tokens": args.max_tokens},
                                      max_concurrency=cores, timeout_s=600)
        started = time.perf_counter()
        rows = run_checkpoint(items, manifest, base_url=local.base_url)
        seconds = time.perf_counter() - started
        got = line("pipeline: run_checkpoint through the replicas", args.calls, sum(int(r["completion_tokens"] or 0) for r in rows), seconds)
    print(f"\npipeline / best llama.cpp: {got / best:.0%} (target >= 80%)")


if __name__ == "__main__":
    main()
