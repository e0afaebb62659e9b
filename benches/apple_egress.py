#!/usr/bin/env python3
"""An Apple-sized egress list for the benchmarks (benches/compare.sh, classify_click.sh), on
standard output: 300,000 prefixes, a tenth of them IPv6, in Apple's format (prefix, country,
region, city, a line), none covering 127.0.0.1, so that every click from loopback is looked
up and found in none.

    python3 benches/apple_egress.py > apple-egress.csv
"""

PREFIXES = 300_000

for n in range(PREFIXES):
    if n % 10 == 0:
        print("2a02:26f7:%x:%x::/64,US,US-CA,Cupertino," % (n >> 16, n & 0xFFFF))
    else:
        print("%d.%d.%d.0/24,US,US-CA,Cupertino," % (17 + n // 65536 % 200, n // 256 % 256, n % 256))
