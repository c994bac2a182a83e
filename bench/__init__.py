"""Benchmarks: RD against classical codecs with BD-rates (``rd``), speed suites (``speed/``), scaling."""

from nvcodec.bench.bdrate import bd_rate

__all__ = ["bd_rate"]
