"""Cohort runs: many cases through the one Runner (docs/architecture.md, "One runner, several front doors").

manifest  cases from a CSV/JSONL manifest or an image folder, each a ready job request
checks    what the plan refuses across rows: an output that is an input, outside --output-dir
sharding  `--num-parts N --part-id k`: which cases this machine runs
records   summary.csv/summary.json, written atomically; what a resumed run may skip
journal   every row appended and flushed the moment it is recorded
digests   the checksums resume trusts
folder_lock  one run per output folder
worker    one case on a warm Runner → a summary row (shared by the local and the Ray engine)
local     the local engine: one worker in this process
ray_engine  Ray actors, one warm worker per GPU (or CPU slot)
plan      the run as a whole: plan, skip, dispatch, record
"""
