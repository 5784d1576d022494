"""FHIR R5 pieces of the Orthovision AI IG shared by the client, the server and the test kit.

Plain data (dicts) in and out; `fhir.resources` checks structure. No HTTP, no Starlette here.
"""
