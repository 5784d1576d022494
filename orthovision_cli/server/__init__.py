"""`orthovision serve`: a reference Orthovision AI IG service (optional extra `[server]`).

Only `app` imports Starlette; the rest (store, workers, rules) is plain Python so the CLI can
import `orthovision_cli.server.config` without the extra installed.
"""
