#!/usr/bin/python3
"""Shard assignments for `--shard K/N` (lib/cli/shard.ts), computed with
Python's hashlib, independently of Node: K = (first 8 bytes of SHA-256 of the
UTF-8 path, big-endian) mod N, plus 1. The path is normalised first: '\\' -> '/',
repeated '/' collapsed, leading './' removed.

Writes test/fixtures/eval/shards.json, which the TypeScript test compares with
shardOf(): the same on every machine, so a Slurm array or an Indexed Job splits
a corpus the same way on every node.
"""
import hashlib
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', '..', 'test', 'fixtures', 'eval', 'shards.json')

PATHS = [
    'images/study0001.png',
    './images/study0001.png',
    'images\\study0002.png',
    'scans//ward3/IM000001',
    '/data/mimic/p10/p10000032/s50414267/02aa804e.jpg',
    'chest.png',
    'Röntgen/thorax ä.dcm',
    'a.png',
    'b.jpg',
    'c.webp',
]
COUNTS = [1, 2, 3, 4, 7, 10, 100]


def key(p):
    s = re.sub(r'/{2,}', '/', p.replace('\\', '/'))
    while s.startswith('./'):
        s = s[2:]
    return s


def shard(p, n):
    h = int.from_bytes(hashlib.sha256(key(p).encode('utf-8')).digest()[:8], 'big')
    return h % n + 1


def main():
    cases = [{'path': p, 'count': n, 'shard': shard(p, n)} for p in PATHS for n in COUNTS]
    with open(OUT, 'w') as f:
        json.dump({'about': 'tools/reference/shard_expectations.py (hashlib)', 'cases': cases}, f, indent=1, ensure_ascii=False)
        f.write('\n')
    print(f'wrote {len(cases)} cases to {OUT}')


if __name__ == '__main__':
    main()
