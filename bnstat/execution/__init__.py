"""The engine that runs models on data, shared by the data diagnosis and recalibration.

`model` says what is asked of a model (`ModelRunner`: run it; `StatisticsStore`: its
statistics), `runtimes` opens one from a checkpoint or wraps one in memory, `loop` runs
passes over any iterable of batches, `data` reads a folder of images or tensor files,
`moments` accumulates per-channel float64 moments, `schedule` and `cache` let an exact
sweep run each part of the model once, and `measure` measures what layers receive.
"""
