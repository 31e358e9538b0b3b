"""NumPy twins of the C core's operations: the test oracles, and a readable specification."""
