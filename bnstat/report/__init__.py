"""The results every command returns: immutable records, no I/O, no torch.

`inspection` holds what `inspect` and `check` found (`Report`), `diff` the drift between
two checkpoints, `recalibration` what a recalibration changed, `rules` the rules a
`bnstat rules` call shows. Each result states a `Verdict`; the formats in
`bnstat.formats` turn results into text and the CLI alone turns verdicts and errors into
exit codes.
"""
