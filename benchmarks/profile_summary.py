"""Summarise a py-spy raw profile of the sidecar: where its CPU goes, per actor thread.

    python benchmarks/run.py --only throughput-1 --profile /tmp/prof
    python benchmarks/profile_summary.py /tmp/prof/throughput-1.txt

Reads what ``run.py --profile`` writes: ``NAME.txt`` (``py-spy record --format raw --threads``,
idle samples excluded, so a sample is a thread on a CPU) and, when present, ``NAME.cpu.json``
(the kernel's CPU seconds per thread id over the same delivery). Prints, for the whole process
and for each actor (threads grouped by name: ``ConnectionActor-5`` and ``-6`` are one group),
the top functions by own time (the innermost frame) and by total time (anywhere on the stack).
Percentages are of all samples of the process.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_THREAD = re.compile(r"^thread \((?P<tid>\d+)\)(?:: (?P<name>.*))?$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_INSTANCE = re.compile(r"-\d+$")


@dataclass
class Group:
    """The samples of one actor (or other thread name) group."""

    samples: int = 0
    thread_ids: set[int] = field(default_factory=set)
    own: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    own_lines: Counter[str] = field(default_factory=Counter)


def function_of(frame: str) -> tuple[str, str]:
    """(``function (file)``, ``function (file:line)``) of one py-spy frame."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, frame
    function, file, line = match["function"], match["file"], match["line"]
    return f"{function} ({file})", f"{function} ({file}:{line})" if line else frame


def parse(path: Path) -> dict[str, Group]:
    """Groups by thread name (instance number dropped) from a raw py-spy file."""
    groups: dict[str, Group] = defaultdict(Group)
    for line in path.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = _THREAD.match(frames[0])
        name, tid = "(no thread)", 0
        if thread is not None:
            frames = frames[1:]
            tid = int(thread["tid"])
            name = _INSTANCE.sub("", thread["name"] or f"thread {tid}")
        group = groups[name]
        group.samples += count
        group.thread_ids.add(tid)
        if not frames:
            continue
        functions = [function_of(frame) for frame in frames]
        group.own[functions[-1][0]] += count
        group.own_lines[functions[-1][1]] += count
        for function in {function for function, _ in functions}:
            group.total[function] += count
    return groups


def measurements(path: Path) -> dict[str, Any]:
    """What ``run.py`` measured beside the profile (``NAME.cpu.json``), if it exists."""
    cpu_path = path.with_suffix(".cpu.json")
    return json.loads(cpu_path.read_text()) if cpu_path.exists() else {}


def describe(data: dict[str, Any], samples: int) -> list[str]:
    """Header lines: the delivery, CPU per process group, and what the samples mean."""
    if not data:
        return []
    lines = [
        f"delivery: {data['messages']:,} events in {data['seconds']:.2f} s "
        f"({data['messages'] / data['seconds']:,.0f} events/s)",
        "CPU seconds during it: "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in data.get("cpu", {}).items()),
    ]
    reads = (data.get("sidecar_metrics") or {}).get("socket_reads")
    if reads:
        lines.append(
            f"socket reads: {reads:,.0f} ({data['messages'] / reads:,.1f} events per read)"
        )
    profile = data.get("profile") or {}
    if profile.get("seconds"):
        ticks = profile["seconds"] * profile["rate"]
        what = "a thread held the GIL" if profile.get("mode") == "gil" else "threads active"
        lines.append(
            f"py-spy {profile.get('mode')} mode, {profile['rate']} Hz over "
            f"{profile['seconds']:.1f} s: {what} in {100 * samples / ticks:.0f}% of ticks"
        )
    return lines


def table(counter: Counter[str], all_samples: int, top: int, title: str) -> list[str]:
    """Top entries of ``counter`` as percentages of ``all_samples``."""
    lines = [f"  {title}:"]
    for function, count in counter.most_common(top):
        lines.append(f"    {100 * count / all_samples:5.1f}%  {count:6d}  {function}")
    return lines


def summary(path: Path, top: int, group_top: int) -> str:
    """The whole summary as text."""
    groups = parse(path)
    data = measurements(path)
    cpu = {int(tid): seconds for tid, seconds in data.get("thread_cpu", {}).items()}
    all_samples = sum(group.samples for group in groups.values()) or 1
    overall = Group()
    for group in groups.values():
        overall.samples += group.samples
        overall.own.update(group.own)
        overall.total.update(group.total)
        overall.own_lines.update(group.own_lines)
    lines = [f"{path}: {all_samples} samples"]
    lines += describe(data, all_samples)
    lines.append("threads (share of samples; kernel CPU seconds of those threads):")
    for name, group in sorted(groups.items(), key=lambda item: -item[1].samples):
        seconds = sum(cpu.get(tid, 0.0) for tid in group.thread_ids)
        kernel = f", {seconds:.2f} CPU s" if cpu else ""
        lines.append(
            f"  {100 * group.samples / all_samples:5.1f}%  {group.samples:6d}  {name} "
            f"({len(group.thread_ids)} thread(s){kernel})"
        )
    lines.append("whole process:")
    lines += table(overall.own, all_samples, top, "own time")
    lines += table(overall.own_lines, all_samples, top, "own time by line")
    lines += table(overall.total, all_samples, top, "total time")
    for name, group in sorted(groups.items(), key=lambda item: -item[1].samples):
        if group.samples < all_samples * 0.01:
            continue
        lines.append(f"{name} ({100 * group.samples / all_samples:.1f}% of samples):")
        lines += table(group.own, all_samples, group_top, "own time")
        lines += table(group.total, all_samples, group_top, "total time")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the summary of each profile given."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy raw files (NAME.txt)")
    parser.add_argument("--top", type=int, default=25, help="entries in whole-process tables")
    parser.add_argument("--group-top", type=int, default=12, help="entries per thread group")
    args = parser.parse_args(argv)
    for path in args.profiles:
        print(summary(path, args.top, args.group_top))


if __name__ == "__main__":
    main()
