#!/usr/bin/python3
"""Reference values for the engine's random source (native/engine/sampler.cpp):
splitmix64 expands the seed into the four words of a xoshiro256** state, and
next_double() is (next_u64() >> 11) * 2**-53. Written from the published
algorithms (Vigna, prng.di.unimi.it) with Python integers, independently of the
C++ code. Prints the C++ initialisers used in native/tests/test_sampler.cpp.
"""
M = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M


class Xoshiro256ss:
    def __init__(self, seed):
        self.s = []
        x = seed & M
        for _ in range(4):
            x, v = splitmix64(x)
            self.s.append(v)

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 17) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def next_double(self):
        return (self.next_u64() >> 11) * 2.0 ** -53


if __name__ == "__main__":
    for seed in (0, 42):
        r = Xoshiro256ss(seed)
        u = [r.next_u64() for _ in range(6)]
        d = [r.next_double() for _ in range(4)]
        print("// seed %d: next_u64() x6, then next_double() x4" % seed)
        print("{" + ", ".join("0x%016Xull" % v for v in u) + "},")
        print("{" + ", ".join(repr(v) for v in d) + "},")
