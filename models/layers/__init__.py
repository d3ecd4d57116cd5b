"""Convolution variants a design can choose, and the factory that builds them."""
