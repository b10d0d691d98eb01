"""`serve`: a long-lived worker that speaks the job contract over HTTP (FastAPI + uvicorn).

auth.py     bearer token: read from a file or generated into a 0600 file
inputs.py   what a job may read (a path under --allow-root, a model under --allow-model-root) and
            where its output goes
uploads.py  request bodies read as they arrive: the upload limit at the byte that passes it
job.py      one job: its events, held terminal event, state
jobs.py     the job registry, the bounded queue and the single worker thread (cancel, abandon)
workdir.py  the work folder's owner, and what a killed server left there
errors.py   the refusals only `serve` makes, with their HTTP status
health.py   device, memory and warm models, for /v1/health
app.py      the HTTP routes

The HTTP API is documented in docs/service.md; DiffusionSegLib/serve/client.py is its stdlib client.
"""
