"""Performance benchmarks of harness pieces (run by hand; not part of the test suite)."""
