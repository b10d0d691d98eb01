"""The job contract, spoken by every front door: the request, the events, the errors with
their codes and exit statuses, and the closed vocabularies a request may name. Torch-free and
the bottom floor: everything may import it, it imports nothing else of the backend.

request    JobRequest and PipelineOptions: the one request validator
events     event dictionaries, JobContext (progress, log, cancel, timings), CancelToken
errors     DiffusionSegError and its subclasses: code + exit status + hint
choices    devices, slice axes, dtypes, intensity presets; the data folder
"""
