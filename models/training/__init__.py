"""The tiny model's training recipe: procedural faces, espeak speech, the dataset, the training
stages and the quality metrics. Nothing outside this package imports it except `avatar eval` (for
its faces, speech and metrics) and the tests; run it with `python -m models.training <stage> ...`.
"""
