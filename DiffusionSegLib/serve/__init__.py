"""`serve`: a long-lived worker that speaks the job contract over HTTP (FastAPI + uvicorn).

auth.py    bearer token: read from a file or generated into a 0600 file
inputs.py  where a job's input comes from (a path under --allow-root, or an upload) and goes to
jobs.py    the job registry and the single worker thread that runs jobs from a queue
health.py  device, memory and warm models, for /v1/health
app.py     the HTTP routes

The HTTP API is documented in docs/service.md; DiffusionSegLib/serve/client.py is its stdlib client.
"""
