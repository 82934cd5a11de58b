"""The dispatcher's answer to a LiveKit webhook it took: 204, the outcome in headers.

A 2xx has no body on purpose: LiveKit closes its webhook connection without reading the
answer, so any body makes Go's HTTP client drop the connection and the next webhook
pays for a new one. Refusals (4xx, 503) carry ``{"error": <code>}`` as JSON.
"""

OUTCOME_HEADER = "Core-Voice-Outcome"
"""``accepted`` (the job is stored), ``duplicate`` (it was already), ``noted``
(room_finished, participant_left) or ``ignored`` (see `REASON_HEADER`)."""
JOB_ID_HEADER = "Core-Voice-Job-Id"
"""The job the webhook stored or collapsed into (accepted, duplicate)."""
EVENT_HEADER = "Core-Voice-Event"
"""The webhook's event (noted, ignored)."""
REASON_HEADER = "Core-Voice-Reason"
"""Why it was ignored: ``not_handled``, ``not_a_sip_caller``."""
