"""Counters of the server, written in Prometheus' text format (version 0.0.4) at GET /metrics.

Requests are counted by route and status code (routes outside the API count as "other", so random paths
cannot grow the label set); tokens by prompt, cached prompt and completion; the gauges are read at scrape
time: queue depth, whether a generation runs, the last generation's prefill and decode tokens/s, and the
process's resident memory (VmRSS, /proc/self/status).

Example::

    m = Metrics(model_name="smollm2-135m")
    m.count_request("/v1/chat/completions", 200)
    m.record_generation({"prompt_tokens": 12, "cached_tokens": 0, "generated_tokens": 5, ...})
    print(m.render(queue_depth=0, running=0))
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/tokenize", "/detokenize", "/metrics", "/")

PREFIX = "edge_sdk_"


def rss_bytes() -> int:
    """This process's resident set size (VmRSS), 0 where /proc is absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cached_tokens(stats: Mapping[str, Any]) -> int:
    """Prompt tokens whose KV cache entries were reused rather than computed (`Model.last_stats`)."""
    return int(stats.get("cached_tokens", stats.get("reused_tokens", 0)) or 0)


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self.restored_prompt_tokens = 0
        self.completion_tokens = 0
        self.generations = 0
        self.cancelled = 0
        self.generation_seconds = 0.0
        self.last_prefill_tok_s = 0.0
        self.last_decode_tok_s = 0.0

    def count_request(self, path: str, status: int) -> None:
        route = path if path in ROUTES else ("/v1/models" if path.startswith("/v1/models/") else "other")
        with self._lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1

    def record_generation(self, stats: Mapping[str, Any]) -> None:
        """One finished generation's `Model.last_stats`."""
        with self._lock:
            self.generations += 1
            self.prompt_tokens += int(stats.get("prompt_tokens", 0))
            self.cached_prompt_tokens += cached_tokens(stats)
            self.restored_prompt_tokens += int(stats.get("restored_tokens", 0) or 0)
            self.completion_tokens += int(stats.get("generated_tokens", 0))
            self.generation_seconds += float(stats.get("prefill_s", 0.0)) + float(stats.get("decode_s", 0.0))
            if stats.get("stop_reason") == "cancelled":
                self.cancelled += 1
            if stats.get("prefill_tok_s"):
                self.last_prefill_tok_s = float(stats["prefill_tok_s"])
            if stats.get("decode_tok_s"):
                self.last_decode_tok_s = float(stats["decode_tok_s"])

    def render(self, queue_depth: int, running: int) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {PREFIX}{name} {help_}")
            out.append(f"# TYPE {PREFIX}{name} {kind}")
            for labels, value in samples:
                v = repr(float(value)) if isinstance(value, float) else str(value)
                out.append(f"{PREFIX}{name}{labels} {v}")

        with self._lock:
            reqs = sorted(self.requests.items())
            metric("model_info", "gauge", "The model served (always 1).", [(f'{{model="{_label(self.model_name)}"}}', 1)])
            metric("requests_total", "counter", "HTTP requests answered, by route and status code.",
                   [(f'{{route="{_label(r)}",code="{c}"}}', n) for (r, c), n in reqs])
            metric("generations_total", "counter", "Generations the model ran to their end.", [("", self.generations)])
            metric("generations_cancelled_total", "counter", "Generations cancelled (client gone, shutdown).",
                   [("", self.cancelled)])
            metric("prompt_tokens_total", "counter", "Prompt tokens of all generations.", [("", self.prompt_tokens)])
            metric("prompt_tokens_cached_total", "counter",
                   "Prompt tokens whose KV cache was reused instead of computed.", [("", self.cached_prompt_tokens)])
            metric("prompt_tokens_restored_total", "counter",
                   "Of the cached prompt tokens, those copied back from a prompt-cache slot.",
                   [("", self.restored_prompt_tokens)])
            metric("completion_tokens_total", "counter", "Tokens generated.", [("", self.completion_tokens)])
            metric("generation_seconds_total", "counter", "Seconds spent in prefill and decode.",
                   [("", self.generation_seconds)])
            metric("prefill_tokens_per_second", "gauge", "Prefill speed of the last generation.",
                   [("", self.last_prefill_tok_s)])
            metric("decode_tokens_per_second", "gauge", "Decode speed of the last generation.",
                   [("", self.last_decode_tok_s)])
        metric("queue_depth", "gauge", "Requests waiting for the model.", [("", queue_depth)])
        metric("requests_running", "gauge", "Generations running now (0 or 1).", [("", running)])
        metric("resident_memory_bytes", "gauge", "Resident memory of the server process (VmRSS).", [("", rss_bytes())])
        return "\n".join(out) + "\n"
