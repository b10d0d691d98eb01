"""Synthetic images and tiny random-weight models saved to disk, for the tests, the demo and the
Slicer self-test. Production code never imports this package (Testing/test_architecture.py).
"""
