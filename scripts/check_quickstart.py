"""Checks the quickstart output: exactly COUNT datagen records, each exactly once, with the values
datagen derives from its sequence number, and in order within every topic partition.

usage: check_quickstart.py FILE COUNT
"""
import json
import sys
from collections import defaultdict


def expected_value(seq: int) -> dict:
    return {
        "seq": seq,
        "name": f"user-{seq % 10000:04d}",
        "amount": f"{(seq * 37) % 100000 / 100:.2f}",
        "created": 1_700_000_000_000 + seq * 1000,
    }


def main() -> int:
    path, count = sys.argv[1], int(sys.argv[2])
    problems = []
    seen = set()
    last = defaultdict(lambda: (-1, -1))  # partition -> (offset, seq)
    records = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            record = json.loads(line)
            records += 1
            value, seq = record["value"], record["value"]["seq"]
            if seq in seen:
                problems.append(f"line {n}: seq {seq} appears more than once")
            seen.add(seq)
            if value != expected_value(seq) or record["key"] != str(seq):
                problems.append(f"line {n}: record {record} is not what datagen produced for seq {seq}")
            prev_offset, prev_seq = last[record["partition"]]
            if record["offset"] <= prev_offset or seq <= prev_seq:
                problems.append(f"line {n}: out of order in partition {record['partition']}")
            last[record["partition"]] = (record["offset"], seq)
    missing = set(range(count)) - seen
    if missing:
        problems.append(f"{len(missing)} records missing, e.g. seq {sorted(missing)[:5]}")
    if records != count:
        problems.append(f"expected {count} records, found {records}")
    if problems:
        print("quickstart check FAILED:")
        for p in problems[:20]:
            print("  " + p)
        return 1
    print(f"quickstart OK: {records} records moved datagen -> topic quickstart.orders -> {path}")
    print(f"  each sequence number 0..{count - 1} exactly once, values as generated,")
    print(f"  in offset order within each of the {len(last)} partitions ({', '.join(str(p) + ': ' + str(o + 1) for p, (o, _) in sorted(last.items()))} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
