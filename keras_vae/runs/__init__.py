"""The run folder: its layout (``folder``), life (``lifecycle``), resumable checkpoint
(``checkpoint``) and one-writer lock (``lock``).

No TensorFlow at import time; loading a model from a run imports Keras when it is called.
"""
