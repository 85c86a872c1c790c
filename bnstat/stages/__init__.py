"""The inspect pipeline, one module per stage, in the order a checkpoint goes through it:

1. `expand_inputs`: command-line arguments to the files to read, each sniffed once.
2. `open_checkpoint`: a file to a `RawCheckpoint` (lazy tensors), by the reader its
   content calls for.
3. `find_state_dicts`: the mappings of tensors inside the checkpoint, however nested,
   wrapper prefixes removed.
4. `find_layers`: the BatchNorm layers of each state dict, and which state dicts are
   models to report.
5. `read_layers`: every layer's tensors read into flat float64 arrays (`LayerBatch`).
6. `summarise`: per-layer distributions for the reports.
7. `diagnose` (only with --data): the model run on data, each layer's input against its
   stored statistics.
8. `run_rules`: the rules over the layers, as findings.

`bnstat.analysis` chains them into the report of each model and of the run; `bnstat.diff`
uses stages 2 to 5.
"""
