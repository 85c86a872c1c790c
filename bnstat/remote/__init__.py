"""Checkpoints on web servers, object stores and model hubs, read by byte ranges.

A URL (`https://`, `s3://`, `gs://`, `az://`, `hf://ORG/REPO[@REV][/PATH]`) is read
through the scheme's own package (the extra `bnstat[remote]`): `url` knows URLs as text
(display without secrets, siblings, baseline keys) and imports nothing of them; `file`
reads exact byte ranges, merged and in parallel, and counts what they cost; `http`
sends HTTP's requests with aiohttp, on the event loop of `aio`; `store` reads an object
store's or the hub's through fsspec, whose filesystem `connect` builds with bnstat's
timeouts; `faults` turns what the libraries raise into one-line errors; `listing`
expands folders and globs; `download` fetches a whole file for the commands that
rewrite it. Local runs never import any of this but `url`.
"""
