"""A person in the loop: the review page, the decisions file and the hot folder.

* `orthovision_cli.decisions` (below `batch`, which reads it): `OUT/orthovision-decisions.csv`,
  a person's four labels per input (by sha256);
* `items`: what awaits review in an output tree (review CSV + state), and the code tables;
* `server`: the local review page (standard library HTTP server, 127.0.0.1 only);
* `apply`: convert the decided files at once, with the settings of the last `convert`;
* `watch`: the hot folder loop behind `orthovision watch`.
"""
