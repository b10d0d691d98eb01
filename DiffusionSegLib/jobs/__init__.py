"""A job from request to files: `job.run_job` checks the request, the files and the image before
any model loads, runs the volume pipeline and commits the outputs; `runner.Runner` runs jobs one
at a time with the warm caches, behind every front door (segment/run, serve, batch, evaluate).
"""
