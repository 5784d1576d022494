"""FHIR R5 pieces of the Orthovision AI IG shared by the client, the server and the test kit.

Plain data (dicts) in and out; `fhir.resources` checks structure. No Starlette here; the one
part that speaks HTTP is the conformance kit (`fhir.conformance`, httpx), which nothing else in
this package imports.
"""
