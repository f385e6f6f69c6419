"""Training: one run from data to run folder (``loop.train``), distribution strategies, the dtype
policy, recipe callbacks, schedules and TensorBoard summaries.
"""
