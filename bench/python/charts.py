#!/usr/bin/env python3
"""Charts of a bench/compare run (matplotlib, in the harness's virtualenv).

    charts.py RESULT_DIR OUT_DIR MODE

Writes OUT_DIR/bench-MODE-throughput.png (turns/s against clients, one panel per backend) and
OUT_DIR/bench-MODE-get-latency.png (get_items(limit=20) p50 against history length) and prints
their paths.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "rust-ours": ("tab:blue", "o"),
    "rust-port": ("tab:orange", "s"),
    "rust-bare": ("tab:gray", "x"),
    "py-ours": ("tab:green", "^"),
    "py-seed": ("tab:red", "v"),
    "py-official": ("tab:purple", "D"),
}


BACKEND = {"redis": ("o", "-"), "sqlite": ("s", "--"), "dynamodb": ("^", ":")}


def style(label: str):
    """Colour: whose implementation; marker: which backend."""
    color, marker = STYLE.get(label.split("/")[0], ("black", "."))
    if label.endswith("sqlite-normal"):
        color = "tab:cyan"
    return color, BACKEND.get(label.split("/")[1].split("-")[0], (marker, "-"))[0]


def backend_ls(label: str) -> str:
    return BACKEND.get(label.split("/")[1].split("-")[0], ("", "-"))[1]


def main() -> int:
    result_dir, out_dir, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    summary = json.loads((result_dir / "summary.json").read_text())
    meta = json.loads((result_dir / "meta.json").read_text())
    backends = [b for b in ("redis", "sqlite", "dynamodb") if any(label.split("/")[1].startswith(b) for label in summary)]

    fig, axes = plt.subplots(1, len(backends), figsize=(5.5 * len(backends), 4.6), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        for label, combos in summary.items():
            if not label.split("/")[1].startswith(backend):
                continue
            color, marker = style(label)
            for hclass, ls in (("empty", "-"), ("long", "--")):
                pts = sorted((v["clients"], v["turns_per_sec"], v["history"]) for k, v in combos.items() if k.endswith("/" + hclass))
                if not pts:
                    continue
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, color=color, marker=marker,
                        label=f"{label}, {'empty' if hclass == 'empty' else str(pts[0][2]) + ' items'}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("turns/s (median)")
        ax.set_title(f"{backend}: turn throughput")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(f"bench/compare {mode}, {meta['started']} (get_items(20) + add_items(2 items) per turn)", fontsize=9)
    fig.tight_layout()
    p1 = out_dir / f"bench-{mode}-throughput.png"
    fig.savefig(p1, dpi=110)
    print(p1)

    scale = meta.get("scale") or {}
    panels = 2 if scale else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.6), squeeze=False)
    ax = axes[0][0]
    for label, combos in summary.items():
        pts = sorted((v["history"], v["get_p50_us"]) for k, v in combos.items() if v["clients"] == 1 and v["get_p50_us"])
        if len(pts) < 2:
            continue
        color, marker = style(label)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], backend_ls(label), color=color, marker=marker, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("history length (items pre-filled)")
    ax.set_ylabel("get_items(limit=20) p50, µs")
    ax.set_title("1 client, 16 sessions (line: redis solid, sqlite dashed, dynamodb dotted)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5)
    if scale:
        ax = axes[0][1]
        for label, row in scale.items():
            pts = sorted((int(h), v) for h, v in row.items())
            color, marker = style(label)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], backend_ls(label), color=color, marker=marker, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("history length (items, log)")
        ax.set_ylabel("get_items(limit=20) p50, µs")
        ax.set_title("1 client, 1 session, 20 to 100,000 items")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.suptitle(f"bench/compare {mode}: get latency against history length", fontsize=9)
    fig.tight_layout()
    p2 = out_dir / f"bench-{mode}-get-latency.png"
    fig.savefig(p2, dpi=110)
    print(p2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
