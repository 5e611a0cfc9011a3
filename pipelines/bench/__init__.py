"""Benchmarks, side by side with what a user would pick instead; run by ``vidsvd bench``.

Imported by nothing but the command line: the product never depends on them.
"""
