"""`whale-progress`: the hub service that keeps each learner's lesson progress and shows
it to them ("My progress") and to their teachers (the instructors' dashboard).

`whale-check` in a learner's server reports each check it runs here. For a hosted
(sandbox) engine the service runs the same check again itself, with the hub's own
credentials for that engine, and records *its* finding as verified: what a learner sends
or edits in a notebook cannot make an exercise verified. For a learner's own engine
(BYOC) the hub holds no credentials of its own, so the learner's finding is recorded as
self-reported, and shown so everywhere.

Names the hub's configuration shares with the service live here (importing this module
loads nothing else).
"""

#: The service's name: its URL is /services/whale-progress/.
SERVICE_NAME = "whale-progress"
#: The custom scope that lets its holder read every learner's progress (the dashboard);
#: `custom:whale-progress:read!user=NAME` lets them read that learner's only.
READ_SCOPE = "custom:whale-progress:read"
#: Members of this JupyterHub group are instructors: the site's roles give them READ_SCOPE.
INSTRUCTORS_GROUP = "instructors"
#: Learners' servers must hold this scope to report results (Spawner.server_token_scopes).
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
