"""The panel's precision and CPU-thread settings reach the job request (issue 12)."""

import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
from DiffusionSegSlicerLib.JobSettings import DTYPES, JobSettings, buildJobRequest


def test_precision_and_threads_reach_the_request():
    settings = JobSettings(method="adzus", device="cpu", dtype="float32", threads=2)
    request = buildJobRequest(settings, "/t/in.nrrd", "/t/out.nrrd").to_dict()
    assert request["dtype"] == "float32" and request["threads"] == 2
    default = buildJobRequest(JobSettings(method="adzus"), "/t/in.nrrd", "/t/out.nrrd").to_dict()
    assert default["dtype"] == "auto" and default["threads"] == 0


def test_stale_or_foreign_values_fall_back():
    assert DTYPES[0] == "auto" and "bfloat16" in DTYPES
    restored = JobSettings.fromJson(JobSettings(dtype="bfloat16", threads=3).toJson())
    assert (restored.dtype, restored.threads) == ("bfloat16", 3)
    stale = JobSettings.fromDict({"dtype": "int4", "threads": -2})
    assert (stale.dtype, stale.threads) == ("auto", 0)
    wrong_type = JobSettings.fromDict({"dtype": 16, "threads": "4"})
    assert (wrong_type.dtype, wrong_type.threads) == ("auto", 0)
