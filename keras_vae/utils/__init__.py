"""Small helpers with no TensorFlow at import time: edge validation, CPU facts, progress output,
image grids and conversions, quiet start-up, notebook set-up.
"""
