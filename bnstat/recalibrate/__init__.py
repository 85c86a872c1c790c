"""Recalibration: re-estimate BatchNorm statistics on data and write them back."""
