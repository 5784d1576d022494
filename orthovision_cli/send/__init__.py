"""Deliver converted instances to DICOM nodes: DIMSE C-STORE, DICOMweb STOW-RS, DICOMDIR media.

Modules, bottom up: `destinations` parses where to send; `instances` finds what to send in an
output tree; `ledger` remembers what each destination confirmed; `dimse` and `stow` talk to the
peers; `options` says how to send, `scan` lists an output tree's instances, `worker` runs one
destination's queue, `session` feeds every destination and reports (`results`), `feed` sends from a
running conversion (`convert --send`); `media` writes a PS3.10 File-set.
"""
