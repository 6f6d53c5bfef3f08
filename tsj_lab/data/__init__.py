"""Synthetic ticks: the price model, the binary COPY encoder and the loader."""
