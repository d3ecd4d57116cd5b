"""Kernel Studio's domain: designs, building, counting, benchmarking, training. No UI here."""
