"""Deliver converted instances to DICOM nodes: DIMSE C-STORE, DICOMweb STOW-RS, DICOMDIR media.

Modules, bottom up: `destinations` parses where to send; `instances` finds what to send in an
output tree; `ledger` remembers what each destination confirmed; `dimse` and `stow` talk to the
peers; `pipeline` feeds them (from a finished tree or from a running conversion); `media` writes a
PS3.10 File-set.
"""
