"""Tests of the analyzers' numeric core and of the benchmark scripts that measure it."""
