"""Long standalone runs of a hypothesis fuzz target, driven by random buffers or atheris.

``fuzz_one_input`` lets an outside byte source drive a hypothesis test: each buffer is
decoded as the strategy's choice sequence, so random buffers give structured inputs
without hypothesis' own search and shrinking overhead.  With ``--atheris`` (``pip install
atheris``) libFuzzer supplies the buffers instead, guided by coverage of the loaded code.
Findings are de-duplicated by exception type and first line and their buffers saved under
``fuzz/crashes/`` for replay (``--replay FILE``).  Prints one summary line at the end
(inputs, seconds, findings).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

CRASHES = Path(__file__).resolve().parent / "crashes"


def run(test: Callable[..., Any], name: str, argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"fuzz_{name}")
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-len", type=int, default=4096, help="bytes per input buffer")
    p.add_argument("--replay", type=Path, help="run one saved buffer and show the failure")
    p.add_argument("--atheris", action="store_true", help="drive with atheris if installed")
    args = p.parse_args(argv)
    fuzz_one: Callable[[bytes], Any] = test.hypothesis.fuzz_one_input  # type: ignore[attr-defined]
    if args.replay:
        fuzz_one(args.replay.read_bytes())
        print("replay: no failure")
        return 0
    if args.atheris:
        import atheris  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - optional

        atheris.instrument_all()  # coverage feedback from every loaded module, dhcpleased's too
        flags = [f"-runs={args.runs}", f"-max_len={args.max_len}", "-print_final_stats=1"]
        if args.seed is not None:
            flags.append(f"-seed={args.seed}")
        atheris.Setup([sys.argv[0], *flags], fuzz_one)
        atheris.Fuzz()  # exits the process: 0, or non-zero with the finding printed
        return 0
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    findings: dict[str, int] = {}
    start = time.monotonic()
    report = start + 60
    for i in range(args.runs):
        buf = rng.randbytes(rng.randint(1, args.max_len))
        try:
            fuzz_one(buf)
        except Exception as e:
            key = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if key not in findings:
                CRASHES.mkdir(exist_ok=True)
                digest = hashlib.sha1(buf).hexdigest()[:12]
                (CRASHES / f"{name}-{digest}").write_bytes(buf)
                print(f"finding #{len(findings) + 1} at input {i}: {key}", flush=True)
                traceback.print_exc()
            findings[key] = findings.get(key, 0) + 1
        if time.monotonic() > report:
            report += 60
            rate = (i + 1) / (time.monotonic() - start)
            print(f"{i + 1} inputs, {rate:.0f}/s, {len(findings)} findings", flush=True)
    secs = time.monotonic() - start
    print(
        f"{name}: seed {seed}: {args.runs} inputs in {secs:.0f} s, "
        f"{len(findings)} distinct findings ({sum(findings.values())} failing inputs)",
        flush=True,
    )
    return 1 if findings else 0
