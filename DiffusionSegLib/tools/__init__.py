"""Measuring tools built on the Runner and the methods: evaluate (Dice/IoU/HD95 over labelled
folders), metrics, benchmark and profiling (per-stage time against the bare network floor), and
the service measurement (service_measure).
"""
