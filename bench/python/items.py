#!/usr/bin/env python3
"""Prints N turn items as JSON Lines, alternately the 205 B user message and the 986 B assistant
output message of the turn workload (for `agent-session add` and bench/profile)."""

import json
import sys


def compact(v):
    return json.dumps(v, separators=(",", ":"))


for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2000):
    if i % 2 == 0:
        print(compact({"role": "user", "content": "x" * (205 - len(compact({"role": "user", "content": ""})))}))
    else:
        v = {"id": f"msg_{i}", "type": "message", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "", "annotations": []}]}
        v["content"][0]["text"] = "y" * (986 - len(compact(v)))
        print(compact(v))
